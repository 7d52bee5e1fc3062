-- Shared Lua helpers, prepended to each script.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
local function move_status(prefix, id, item, run, gap, from, to)
  if from == to then return end
  local p = prefix .. ':run:' .. run
  redis.call('HINCRBY', p .. ':counts', gap .. '|' .. from, -1)
  redis.call('HINCRBY', p .. ':counts', gap .. '|' .. to, 1)
  redis.call('SMOVE', p .. ':status:' .. from, p .. ':status:' .. to, id)
  redis.call('HSET', item, 'status', to)
end
