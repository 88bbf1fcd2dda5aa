--[[
renew: extends the lease of one address, only if the caller still owns it.

KEYS[1]  owner hash of the address (see register.lua)
ARGV[1]  node id of the caller
ARGV[2]  activation id of the caller
ARGV[3]  lease in ms (positive integer); the lease becomes now + ARGV[3] (Redis server time)

Returns  1 if renewed, 0 if the entry expired or belongs to another activation (nothing changed).
Idempotent. A node's heartbeat pipelines one call per address (single-key, so Redis Cluster-safe).
]]
local cur = redis.call('HMGET', KEYS[1], 'node', 'activation')
if cur[1] == ARGV[1] and cur[2] == ARGV[2] then
  redis.call('PEXPIRE', KEYS[1], ARGV[3])
  return 1
end
return 0
