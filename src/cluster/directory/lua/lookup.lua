--[[
lookup: the live owner of one address, read atomically with its remaining lease.

KEYS[1]  owner hash of the address (see register.lua)
ARGV     none

Returns  { node, activation, epoch, leaseExpiresAtMs } as strings, or an empty array when the
         address has no live owner. leaseExpiresAtMs is Redis server time. Read-only.
]]
local cur = redis.call('HMGET', KEYS[1], 'node', 'activation', 'epoch')
if not cur[2] then
  return {}
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local pttl = redis.call('PTTL', KEYS[1])
return { cur[1], cur[2], cur[3], string.format('%.0f', now + math.max(pttl, 0)) }
