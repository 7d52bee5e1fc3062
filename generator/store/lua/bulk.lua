-- A bulk action on an item nobody holds: pending or auto_rejected -> to (pending or rejected).
-- The arguments of a logged action (see undo.lua): KEYS: item, pending, leased, log, item votes.
-- ARGV: prefix, id, reviewer, verdict, decision_json, to.
local prefix, id, _reviewer, verdict, decision, to = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'lease_owner', 'run', 'gap', 'priority')
local status, owner, run, gap, priority = f[1], f[2], f[3], f[4], f[5]
if status ~= 'pending' and status ~= 'auto_rejected' then
  return redis.error_reply('TRANSITION ' .. status)
end
if owner then return redis.error_reply('NOT_LEASED ' .. owner) end
if status == to then return redis.error_reply('TRANSITION ' .. status) end
move_status(prefix, id, KEYS[1], run, gap, status, to)
if to == 'pending' then redis.call('ZADD', KEYS[2], priority, id)
else redis.call('ZREM', KEYS[2], id) end
local new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local entry = redis.call('XADD', KEYS[4], '*', 'item', id, 'run', run, 'gap', gap,
                         'verdict', verdict, 'decision', decision)
return {new_version, entry, run, gap}
