-- An admin settles an item whose overlap votes split (two of accept, swap and reject at least):
-- it becomes accepted or rejected (ARGV to) whatever the overlap rule made of the votes; once.
-- The arguments of a logged action (see undo.lua): KEYS: item, pending, leased, log, item votes.
-- ARGV: prefix, id, reviewer, verdict, decision_json, to.
local prefix, id, reviewer, verdict, decision, to = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'exported', 'run', 'gap', 'adjudicated_by')
local status, exported, run, gap, adjudicated = unpack(f)
if status ~= 'accepted' and status ~= 'rejected' then
  return redis.error_reply('TRANSITION ' .. status)
end
if adjudicated then return redis.error_reply('TRANSITION adjudicated by ' .. adjudicated) end
if exported then return redis.error_reply('EXPORTED ' .. exported) end
local labels, distinct = {}, 0
for _, vote in ipairs(redis.call('HVALS', KEYS[5])) do
  if not labels[vote] then labels[vote] = true; distinct = distinct + 1 end
end
if distinct < 2 then return redis.error_reply('NOT_SPLIT') end
move_status(prefix, id, KEYS[1], run, gap, status, to)
redis.call('HSET', KEYS[1], 'decided_by', reviewer, 'adjudicated_by', reviewer)
local new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
local entry = redis.call('XADD', KEYS[4], '*', 'item', id, 'run', run, 'gap', gap,
                         'verdict', verdict, 'decision', decision)
return {new_version, entry, run, gap}
