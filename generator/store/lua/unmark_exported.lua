-- Put back the marks an export made, where they are still its own. KEYS: items.
-- ARGV: export_id, then each item's previous mark ('' for none)
for index, key in ipairs(KEYS) do
  if redis.call('HGET', key, 'exported') == ARGV[1] then
    local previous = ARGV[index + 1]
    if previous == '' then redis.call('HDEL', key, 'exported')
    else redis.call('HSET', key, 'exported', previous) end
  end
end
return #KEYS
