--[[
add: creates or extends one endpoint's interest in a channel.

KEYS[1]  the channel's endpoints: sorted set endpoint -> expiresAtMs (Redis server time)
ARGV[1]  endpoint (`<node>.<shard>`)
ARGV[2]  ttl in ms (positive integer)

Returns  1 when the entry is new (absent or expired), 0 when a live one was extended.

Expired endpoints are pruned first. The key expires (PEXPIRE) with its longest-lived entry, so a
channel nobody follows any more leaves nothing behind. Idempotent: a node's heartbeat pipelines one
call per channel it follows.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local nowText = string.format('%.0f', now)

redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', nowText)
local fresh = 1
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
  fresh = 0
end
redis.call('ZADD', KEYS[1], string.format('%.0f', now + tonumber(ARGV[2])), ARGV[1])

local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], string.format('%.0f', math.max(tonumber(last[2]) - now, 1)))
return fresh
