--[[
unregister: compare-and-delete of one address's owner entry.

KEYS[1]  owner hash of the address (see register.lua)
ARGV[1]  node id of the caller
ARGV[2]  activation id of the caller

Returns  1 if the caller's entry was deleted, 0 if the entry is gone or belongs to another
         activation (nothing changed). The epoch counter is never touched. Idempotent.
]]
local cur = redis.call('HMGET', KEYS[1], 'node', 'activation')
if cur[1] == ARGV[1] and cur[2] == ARGV[2] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
