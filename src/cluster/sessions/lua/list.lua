--[[
list: a user's live device entries.

KEYS[1]  the user's connections hash (see put.lua)
KEYS[2]  the user's expiries sorted set (see put.lua)
ARGV     none

Returns  a flat array { device, connection value, expiresAtMs, ... } of the entries whose expiry
         is after now (Redis server time). Read-only: expired entries are pruned by put.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)

local live = redis.call('ZRANGEBYSCORE', KEYS[2], '(' .. string.format('%.0f', now), '+inf', 'WITHSCORES')
local out = {}
for i = 1, #live, 2 do
  local value = redis.call('HGET', KEYS[1], live[i])
  if value then
    out[#out + 1] = live[i]
    out[#out + 1] = value
    out[#out + 1] = live[i + 1]
  end
end
return out
