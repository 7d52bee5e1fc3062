-- Lease one named item to a reviewer (a replay's recorded vote, an undo's item): refused when it
-- is not pending, another reviewer holds a live lease on it, or this reviewer voted on it.
-- KEYS: item, pending, leased, review (the run's rule), lease_seq, item votes, the run's audit
-- share (items the pre-screen left to humans).
-- ARGV: id, reviewer, lease_ms (the store's default; the run's own lease_ms overrides it), the
-- pre-screen's reviewer id (it may not claim an item of the audit share).
local id, reviewer, lease_ms, model = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4]
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local run_lease = redis.call('HGET', KEYS[4], 'lease_ms')
if run_lease then lease_ms = tonumber(run_lease) end
local f = redis.call('HMGET', KEYS[1], 'status', 'lease_owner', 'lease_expires')
if f[1] ~= 'pending' then return redis.error_reply('TRANSITION ' .. tostring(f[1])) end
local now = now_ms()
if f[2] and f[2] ~= reviewer and tonumber(f[3] or '0') >= now then
  return redis.error_reply('NOT_LEASED ' .. f[2])
end
if redis.call('HEXISTS', KEYS[6], reviewer) == 1 then return redis.error_reply('VOTED') end
if reviewer == model and redis.call('HEXISTS', KEYS[7], id) == 1 then
  return redis.error_reply('AUDIT')
end
local expires = now + lease_ms
redis.call('ZREM', KEYS[2], id)
redis.call('ZADD', KEYS[3], expires, id)
local seq = redis.call('INCR', KEYS[5])
redis.call('HSET', KEYS[1], 'lease_owner', reviewer, 'lease_expires', expires, 'lease_seq', seq)
local g = redis.call('HMGET', KEYS[1], 'version', 'data', 'status', 'priority', 'edited')
return {id, tostring(expires), g[1], g[2], g[3], g[4], g[5] or '', f[2] == reviewer and '1' or '',
        tostring(seq)}
