--[[
refresh: extends one device's live entry, only if it is still the given connection.

KEYS[1]  the user's connections hash (see put.lua)
KEYS[2]  the user's expiries sorted set (see put.lua)
ARGV[1]  device
ARGV[2]  connection value the caller holds
ARGV[3]  ttl in ms (positive integer); the entry then expires at now + ARGV[3] (Redis server time)

Returns  1 if extended; 0 if the entry expired, is gone, or belongs to another connection.
Idempotent. A node's heartbeat pipelines one call per (user, device).
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
if not score or tonumber(score) <= now then
  return 0
end
redis.call('ZADD', KEYS[2], string.format('%.0f', now + tonumber(ARGV[3])), ARGV[1])

local last = redis.call('ZRANGE', KEYS[2], -1, -1, 'WITHSCORES')
local keep = string.format('%.0f', math.max(tonumber(last[2]) - now, 1))
redis.call('PEXPIRE', KEYS[1], keep)
redis.call('PEXPIRE', KEYS[2], keep)
return 1
