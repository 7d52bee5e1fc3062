-- KEYS: pending, leased, skipped(reviewer). ARGV: prefix, reviewer, lease_ms, scan
local prefix, reviewer, lease_ms, scan = ARGV[1], ARGV[2], tonumber(ARGV[3]), tonumber(ARGV[4])
local now = now_ms()
for _, id in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', now)) do
  redis.call('ZREM', KEYS[2], id)
  local item = prefix .. ':item:' .. id
  local f = redis.call('HMGET', item, 'status', 'priority')
  redis.call('HDEL', item, 'lease_owner', 'lease_expires')
  if f[1] == 'pending' then redis.call('ZADD', KEYS[1], f[2], id) end
end
local offset = 0
while true do
  local batch = redis.call('ZREVRANGE', KEYS[1], offset, offset + scan - 1)
  if #batch == 0 then return false end
  for _, id in ipairs(batch) do
    if redis.call('SISMEMBER', KEYS[3], id) == 0
       and redis.call('HEXISTS', prefix .. ':item:' .. id .. ':votes', reviewer) == 0 then
      local expires = now + lease_ms
      local item = prefix .. ':item:' .. id
      redis.call('ZREM', KEYS[1], id)
      redis.call('ZADD', KEYS[2], expires, id)
      redis.call('HSET', item, 'lease_owner', reviewer, 'lease_expires', expires)
      local f = redis.call('HMGET', item, 'version', 'data', 'status', 'priority', 'edited')
      return {id, tostring(expires), f[1], f[2], f[3], f[4], f[5] or ''}
    end
  end
  offset = offset + scan
end
