-- KEYS: pending, leased, skipped(reviewer), review (the run's rule), lease_seq (the run's
-- counter of leases taken: their order, which expiry alone cannot tell within one millisecond).
-- ARGV: prefix, reviewer,
-- lease_ms, scan, '1' when lease_ms was asked for by the caller ('' when it is the store's
-- default, which the run's own lease_ms overrides), then the ids the calling session already
-- holds (its item on screen), which it is not handed again.
local prefix, reviewer, lease_ms, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
if ARGV[5] ~= '1' then
  local run_lease = redis.call('HGET', KEYS[4], 'lease_ms')
  if run_lease then lease_ms = tonumber(run_lease) end
end
local now = now_ms()
local expires = now + lease_ms
-- The reply: id, expiry, version, data, status, priority, edited, '1' when the reviewer held
-- the lease already ('' for an item taken off the queue), and the lease's seq (which lease this
-- is: a release may name it, so a closed session never gives back a lease renewed since).
local function leased_to_reviewer(id, held)
  local item = prefix .. ':item:' .. id
  redis.call('ZREM', KEYS[1], id)
  redis.call('ZADD', KEYS[2], expires, id)
  local seq = redis.call('INCR', KEYS[5])
  redis.call('HSET', item, 'lease_owner', reviewer, 'lease_expires', expires, 'lease_seq', seq)
  local f = redis.call('HMGET', item, 'version', 'data', 'status', 'priority', 'edited')
  return {id, tostring(expires), f[1], f[2], f[3], f[4], f[5] or '', held, tostring(seq)}
end
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[2], id)
  local item = prefix .. ':item:' .. id
  local f = redis.call('HMGET', item, 'status', 'priority')
  redis.call('HDEL', item, 'lease_owner', 'lease_expires')
  if f[1] == 'pending' then redis.call('ZADD', KEYS[1], f[2], id) end
end
-- A live lease this reviewer already holds comes back first, renewed (same version, so a
-- decision from either of the reviewer's tabs counts once and the other is refused): a tab
-- closed or reloaded leaves its leases to the reviewer's next session instead of stranding
-- them for the lease's length. Oldest first (by lease_seq: a tab claims its item and the next
-- one within a millisecond, so their expiries can tie): the item that tab showed, then its
-- prefetched one. O(live leases of the run, all that is left in it now): about two per open tab.
local holding = {}
for index = 6, #ARGV do holding[ARGV[index]] = true end
local oldest, oldest_seq = nil, nil
for _, id in ipairs(redis.call('ZRANGE', KEYS[2], 0, -1)) do
  local f = redis.call('HMGET', prefix .. ':item:' .. id, 'lease_owner', 'lease_seq')
  local seq = tonumber(f[2]) or 0
  if not holding[id] and f[1] == reviewer and (oldest_seq == nil or seq < oldest_seq) then
    oldest, oldest_seq = id, seq
  end
end
if oldest then return leased_to_reviewer(oldest, '1') end
local offset = 0
while true do
  local batch = redis.call('ZREVRANGE', KEYS[1], offset, offset + scan - 1)
  if #batch == 0 then return false end
  for _, id in ipairs(batch) do
    if redis.call('SISMEMBER', KEYS[3], id) == 0
       and redis.call('HEXISTS', prefix .. ':item:' .. id .. ':votes', reviewer) == 0 then
      return leased_to_reviewer(id, '')
    end
  end
  offset = offset + scan
end
