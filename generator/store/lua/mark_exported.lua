-- Mark items exported; returns each one's previous mark (nil where none).
-- KEYS: items. ARGV: export_id
local previous = {}
for index, key in ipairs(KEYS) do
  previous[index] = redis.call('HGET', key, 'exported')
  redis.call('HSET', key, 'exported', ARGV[1])
end
return previous
