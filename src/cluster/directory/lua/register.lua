--[[
register: first-writer-wins registration of one actor address, with a fresh epoch for a winner.

KEYS[1]  owner hash of the address (fields: node, activation, epoch), a lease: PEXPIRE leaseMs
KEYS[2]  epoch counter of the address: the last epoch issued. Never expires, never deleted.
ARGV[1]  node id of the caller
ARGV[2]  activation id of the caller
ARGV[3]  lease in ms (positive integer)

Returns  { won (1|0), node, activation, epoch, leaseExpiresAtMs }  as strings, describing the
         winner: the live owner if there is one, otherwise the caller.

- A live owner with the caller's (node, activation) is the caller retrying a register whose reply
  was lost: it wins again with the same epoch and its lease is extended (idempotent).
- A new owner's epoch is max(last + 1, serverNowMs * 1000): strictly above every epoch issued for
  this address while the counter survives, and still above them after a Redis data loss resets the
  counter, as long as the Redis clock has not gone backwards (the store fences writes regardless).
- Time is Redis server time (TIME), so node clocks never matter.
]]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local lease = tonumber(ARGV[3])

local cur = redis.call('HMGET', KEYS[1], 'node', 'activation', 'epoch')
if cur[2] then
  if cur[1] == ARGV[1] and cur[2] == ARGV[2] then
    redis.call('PEXPIRE', KEYS[1], ARGV[3])
    return { '1', cur[1], cur[2], cur[3], string.format('%.0f', now + lease) }
  end
  local pttl = redis.call('PTTL', KEYS[1])
  return { '0', cur[1], cur[2], cur[3], string.format('%.0f', now + math.max(pttl, 0)) }
end

local last = tonumber(redis.call('GET', KEYS[2]) or '0')
local epoch = string.format('%.0f', math.max(last + 1, now * 1000))
redis.call('SET', KEYS[2], epoch)
redis.call('HSET', KEYS[1], 'node', ARGV[1], 'activation', ARGV[2], 'epoch', epoch)
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return { '1', ARGV[1], ARGV[2], epoch, string.format('%.0f', now + lease) }
