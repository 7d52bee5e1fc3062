-- KEYS: item, pending, leased, skipped(reviewer), log, run review settings, item votes.
-- ARGV: prefix, id, reviewer, verdict, expected_version, to_status, decision_json, edited_json,
-- screened_data: the item's data with its pii score made on the content it will hold ('' when
-- the stored score is current); written with the decision, so the screen never lags the edit;
-- swap: '1' when the edit is a preference pair's swap (a vote of its own under overlap).
local prefix, id, reviewer, verdict, expected, to, decision, edited, screened, swap = unpack(ARGV)
if redis.call('EXISTS', KEYS[1]) == 0 then return redis.error_reply('NOT_FOUND') end
local f = redis.call('HMGET', KEYS[1], 'status', 'version', 'lease_owner', 'lease_expires',
                     'run', 'gap', 'priority')
local status, version, owner, expires, run, gap, priority = f[1], f[2], f[3], f[4], f[5], f[6], f[7]
if status ~= 'pending' then return redis.error_reply('TRANSITION ' .. status) end
if tonumber(expected) ~= tonumber(version) then return redis.error_reply('STALE ' .. version) end
if owner ~= reviewer then return redis.error_reply('NOT_LEASED ' .. tostring(owner or '')) end
if tonumber(expires) < now_ms() then
  redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_expires')
  redis.call('ZREM', KEYS[3], id)
  redis.call('ZADD', KEYS[2], priority, id)
  return redis.error_reply('LEASE_EXPIRED')
end
local review = redis.call('HMGET', KEYS[6], 'k', 'rule')
local k = tonumber(review[1] or '1') or 1
-- Under overlap a swap is a vote for the other order, not an edit every later reviewer sees:
-- the swapped pair (and its screen) wait beside the item (kept: an undo may unsettle it and a
-- later vote settle it again), taken whenever that order wins.
local swap_vote = swap == '1' and k > 1 and verdict ~= 'skip'
local vote = 'reject'
if to == 'accepted' then vote = 'accept' end
if swap_vote then vote = 'swap' end
-- The outcome, worked out before anything is written (a script that fails half way would leave
-- its first writes in place).
local final, swapped = nil, false
if verdict ~= 'skip' and k > 1 then
  local tally = redis.call('HGETALL', KEYS[7])
  local votes = {[reviewer] = vote}
  for index = 1, #tally, 2 do
    if tally[index] ~= reviewer then votes[tally[index]] = tally[index + 1] end
  end
  local count, accepts, swaps = 0, 0, 0
  for _, v in pairs(votes) do
    count = count + 1
    if v == 'accept' then accepts = accepts + 1 elseif v == 'swap' then swaps = swaps + 1 end
  end
  if count >= k then
    -- Accepted in the order most voters took, when over half took it (unanimous: all).
    final = 'rejected'
    if review[2] == 'unanimous' then
      if accepts == count or swaps == count then final = 'accepted' end
    elseif accepts * 2 > count or swaps * 2 > count then
      final = 'accepted'
    end
    swapped = final == 'accepted' and swaps > accepts
    if swapped and not swap_vote and not redis.call('HGET', KEYS[1], 'swap_edit') then
      return redis.error_reply('TRANSITION missing its swapped pair')
    end
  end
end
redis.call('HDEL', KEYS[1], 'lease_owner', 'lease_expires')
redis.call('ZREM', KEYS[3], id)
if swap_vote then
  redis.call('HSET', KEYS[1], 'swap_edit', edited)
  if screened ~= '' then redis.call('HSET', KEYS[1], 'swap_data', screened) end
elseif screened ~= '' then
  redis.call('HSET', KEYS[1], 'data', screened)
end
local new_version = tonumber(version)
if verdict == 'skip' then
  new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  redis.call('SADD', KEYS[4], id)
  redis.call('ZADD', KEYS[2], priority, id)
elseif k <= 1 then
  new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  move_status(prefix, id, KEYS[1], run, gap, 'pending', to)
  redis.call('HSET', KEYS[1], 'decided_by', reviewer)
  if edited ~= '' then redis.call('HSET', KEYS[1], 'edited', edited, 'edited_by', reviewer) end
else
  redis.call('HSET', KEYS[7], reviewer, vote)
  if edited ~= '' and not swap_vote then
    redis.call('HSET', KEYS[1], 'edited', edited, 'edited_by', reviewer)
    new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
  end
  if final == nil then
    redis.call('ZADD', KEYS[2], priority, id)
  else
    if swapped then
      -- The settler's: their undo takes the swap back with the settlement.
      local waiting = redis.call('HMGET', KEYS[1], 'swap_edit', 'swap_data')
      redis.call('HSET', KEYS[1], 'edited', waiting[1], 'edited_by', reviewer)
      if waiting[2] then redis.call('HSET', KEYS[1], 'data', waiting[2]) end
    end
    new_version = redis.call('HINCRBY', KEYS[1], 'version', 1)
    move_status(prefix, id, KEYS[1], run, gap, 'pending', final)
    redis.call('HSET', KEYS[1], 'decided_by', reviewer)
  end
end
local entry = redis.call('XADD', KEYS[5], '*', 'item', id, 'run', run, 'gap', gap,
                         'verdict', verdict, 'decision', decision)
return {new_version, entry, run, gap}
