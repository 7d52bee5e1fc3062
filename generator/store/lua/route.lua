-- KEYS: item. ARGV: prefix, id, to_status, priority ('' keeps it), data ('' keeps it),
-- expected_version ('' = any)
local prefix, id, to, priority, data, expected = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'version', 'run', 'gap', 'priority')
local from, version, run, gap = f[1], f[2], f[3], f[4]
if expected ~= '' and tonumber(expected) ~= tonumber(version) then
  return redis.error_reply('STALE ' .. version)
end
if from == 'accepted' or from == 'rejected' then
  return redis.error_reply('TRANSITION ' .. from)
end
if priority == '' then priority = f[5] end
local p = prefix .. ':run:' .. run
redis.call('ZREM', p .. ':pending', id)
redis.call('ZREM', p .. ':leased', id)
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_expires')
move_status(prefix, id, KEYS[1], run, gap, from, to)
redis.call('HSET', KEYS[1], 'priority', priority)
if data ~= '' then redis.call('HSET', KEYS[1], 'data', data) end
if to == 'pending' then redis.call('ZADD', p .. ':pending', priority, id) end
return redis.call('HINCRBY', KEYS[1], 'version', 1)
