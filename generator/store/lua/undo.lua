-- A settled item goes back to the queue (only its settler can do that); under overlap, a vote on
-- an item still pending is withdrawn without touching the version (another reviewer may hold it).
-- Every logged action (undo.lua, bulk.lua) takes arguments of one shape:
-- KEYS: item, pending, leased, log, item votes.
-- ARGV: prefix, id, reviewer, verdict, decision_json, to ('' where the script decides it),
-- then for undo: screened_data (the item's data with its pii score made on the content without
-- the edit; '' when the stored one is current) and read_at (the version it was made from).
local prefix, id, reviewer, _verdict, decision, _to, screened, read_at = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'decided_by', 'exported', 'run', 'gap',
                     'priority', 'version', 'edited_by', 'adjudicated_by')
local status, by, exported, run, gap, priority, version, edited_by, adjudicated = unpack(f)
-- An admin's adjudication settled the votes: no vote of it (the admin's own included) is
-- taken back, and the adjudication is not undone from the queue.
if adjudicated then return redis.error_reply('TRANSITION adjudicated by ' .. adjudicated) end
if read_at ~= '' and tonumber(read_at) ~= tonumber(version) then
  return redis.error_reply('STALE ' .. version)
end
local function drop_edit()
  redis.call('HDEL', KEYS[1], 'edited', 'edited_by')
  if screened ~= '' then redis.call('HSET', KEYS[1], 'data', screened) end
end
local voted = redis.call('HEXISTS', KEYS[5], reviewer) == 1
local new_version
if status == 'pending' and voted then
  new_version = tonumber(version)
  if edited_by == reviewer then
    drop_edit()
    new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  end
elseif status ~= 'accepted' and status ~= 'rejected' then
  return redis.error_reply('TRANSITION ' .. status)
elseif by ~= reviewer then
  return redis.error_reply('NOT_YOURS ' .. tostring(by or ''))
elseif exported then
  return redis.error_reply('EXPORTED ' .. exported)
else
  move_status(prefix, id, KEYS[1], run, gap, status, 'pending')
  redis.call('HDEL', KEYS[1], 'decided_by')
  if edited_by == reviewer or not edited_by then drop_edit() end
  redis.call('ZADD', KEYS[2], priority, id)
  new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
end
redis.call('HDEL', KEYS[5], reviewer)
local entry = redis.call('XADD', KEYS[4], '*', 'item', id, 'run', run, 'gap', gap,
                         'verdict', 'undo', 'decision', decision)
return {new_version, entry, run, gap}
