-- Write an item's fresh PII/secret screen, unless the item changed since it was screened.
-- A screen is no decision: the version stays, so a reviewer's lease on the item stays valid.
-- KEYS: item. ARGV: data (the item's JSON with the new score), the version it was made at.
-- Returns 1 when written, 0 when the item changed (screen it again).
if redis.call('HGET', KEYS[1], 'version') ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'data', ARGV[1])
return 1
