-- KEYS: item, runs. ARGV: prefix, id, data, status, run, gap, priority
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local prefix, id, data, status, run, gap, priority = unpack(ARGV)
local p = prefix .. ':run:' .. run
redis.call('HSET', KEYS[1], 'data', data, 'status', status, 'version', 0,
           'run', run, 'gap', gap, 'priority', priority)
redis.call('HINCRBY', p .. ':counts', gap .. '|' .. status, 1)
redis.call('SADD', p .. ':status:' .. status, id)
redis.call('SADD', KEYS[2], run)
if status == 'pending' then redis.call('ZADD', p .. ':pending', priority, id) end
return 1
