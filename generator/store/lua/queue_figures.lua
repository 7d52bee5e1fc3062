-- A run's review queue as reviewers see it, on the server's clock: {waiting, leased}. A lease
-- past its expiry is not counted as leased; its item counts as waiting when still pending (the
-- next claim hands it out again). Reads only. KEYS: pending, leased. ARGV: prefix
local now = now_ms()
local expired = redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)
local waiting = redis.call('ZCARD', KEYS[1])
for _, id in ipairs(expired) do
  if redis.call('HGET', ARGV[1] .. ':item:' .. id, 'status') == 'pending' then
    waiting = waiting + 1
  end
end
return {waiting, redis.call('ZCARD', KEYS[2]) - #expired}
