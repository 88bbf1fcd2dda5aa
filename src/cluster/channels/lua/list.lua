--[[
list: a channel's live endpoints.

KEYS[1]  the channel's endpoints sorted set (see add.lua)
ARGV     none

Returns  the endpoints whose expiry is after now (Redis server time). Read-only: expired entries
         are pruned by add.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
return redis.call('ZRANGEBYSCORE', KEYS[1], '(' .. string.format('%.0f', now), '+inf')
