--[[
put: creates or replaces one device's session entry for a user.

KEYS[1]  the user's connections: hash device -> connection value (opaque to Lua; built by the client)
KEYS[2]  the user's expiries: sorted set device -> expiresAtMs (Redis server time)
ARGV[1]  device
ARGV[2]  connection value of the new connection
ARGV[3]  ttl in ms (positive integer)

Returns  the replaced connection value, or '' when there was none (or it was this connection).

Expired entries of the user are pruned first, so a replaced value is always a live one. Both keys
expire (PEXPIRE) when the user's longest-lived entry does, so an abandoned user leaves nothing.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local dead = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
if #dead > 0 then
  redis.call('HDEL', KEYS[1], unpack(dead))
  redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%.0f', now))
end

local prev = redis.call('HGET', KEYS[1], ARGV[1])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[1])

local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = string.format('%.0f', math.max(tonumber(last[2]) - now, 1))
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)

if not prev or prev == ARGV[2] then
  return ''
end
return prev
