--[[
remove: compare-and-delete of one device's entry.

KEYS[1]  the user's connections hash (see put.lua)
KEYS[2]  the user's expiries sorted set (see put.lua)
ARGV[1]  device
ARGV[2]  connection value the caller holds

Returns  1 if the entry was this connection, live, and is now deleted; 0 otherwise. An entry that
         already expired counts as gone (0), though it is deleted here too. Deletes both keys when
         the user has no entry left. Idempotent.
]]
if redis.call('HGET', KEYS[1], ARGV[1]) ~= ARGV[2] then
  return 0
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local score = redis.call('ZSCORE', KEYS[2], ARGV[1])
local live = score and tonumber(score) > now

redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
if redis.call('HLEN', KEYS[1]) == 0 then
  redis.call('DEL', KEYS[1], KEYS[2])
end
if live then
  return 1
end
return 0
