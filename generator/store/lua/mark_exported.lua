-- Mark items exported, each only if it is still accepted at the version the export read (an
-- undo, or any other change, since the read leaves it unmarked: the export leaves it out).
-- With `replacing` set, only items that export still marks are marked (the export was written
-- again without some items, under a new id).
-- KEYS: items. ARGV: export_id, replacing ('' for none), then each item's version as read.
-- Returns per item: '+' .. its previous mark ('' for none) when marked; else '!' .. status,
-- '~' .. version now, or '^' .. the mark another export made since.
local export_id, replacing = ARGV[1], ARGV[2]
local out = {}
for index, key in ipairs(KEYS) do
  local f = redis.call('HMGET', key, 'status', 'version', 'exported')
  local status, version, exported = f[1], f[2], f[3]
  if status ~= 'accepted' then
    out[index] = '!' .. tostring(status or 'deleted')
  elseif version ~= ARGV[index + 2] then
    out[index] = '~' .. version
  elseif replacing ~= '' and exported ~= replacing then
    out[index] = '^' .. tostring(exported or '')
  else
    out[index] = '+' .. (exported or '')
    redis.call('HSET', key, 'exported', export_id)
  end
end
return out
