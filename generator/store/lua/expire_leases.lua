-- Backdate every lease of a run to a moment already past on the server's clock, as if each had
-- run out: the next claim takes the items back and a decision on one is refused as expired.
-- Tests use it instead of sleeping until a short lease runs out. KEYS: leased. ARGV: prefix
local past = now_ms() - 1
local ids = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, id in ipairs(ids) do
  redis.call('ZADD', KEYS[1], past, id)
  redis.call('HSET', ARGV[1] .. ':item:' .. id, 'lease_expires', past)
end
return #ids
