--! include lib/bucket.lua
-- Removes up to ARGV[3] expired conversations. Reply: how many.
local ids = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW, 'LIMIT', 0, tonumber(ARGV[3]))
local messages, bytes = 0, 0
for _, id in ipairs(ids) do
  local v = erase(id)
  messages = messages + (tonumber(v[4]) or 0)
  bytes = bytes + (tonumber(v[5]) or 0) + (tonumber(v[6]) or 0)
end
if messages ~= 0 then redis.call('HINCRBY', TOTALS, 'messages', -messages) end
if bytes ~= 0 then redis.call('HINCRBY', TOTALS, 'bytes', -bytes) end
return #ids
