-- KEYS: item, pending, leased. ARGV: id, reviewer, and optionally the lease's seq: given, only
-- that lease is given back (not one the reviewer's other session has claimed again since).
local f = redis.call('HMGET', KEYS[1], 'lease_owner', 'status', 'priority', 'lease_seq')
if f[1] ~= ARGV[2] then return 0 end
if ARGV[3] and ARGV[3] ~= '' and f[4] ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_expires')
redis.call('ZREM', KEYS[3], ARGV[1])
if f[2] == 'pending' then redis.call('ZADD', KEYS[2], f[3], ARGV[1]) end
return 1
