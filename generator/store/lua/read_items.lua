-- Several fields of many items in one call (a Lua false, a missing field, arrives as None).
-- KEYS: items. ARGV: fields
local out = {}
for index, key in ipairs(KEYS) do out[index] = redis.call('HMGET', key, unpack(ARGV)) end
return out
