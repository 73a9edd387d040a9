--! include lib/bucket.lua
-- The next ids to stream, in byte order. ARGV[3] owner ('' = everyone), ARGV[4] the
-- last id of the previous batch ('' = from the start), ARGV[5] how many ids to scan.
-- Reply: {the last id scanned ('' = none), how many were scanned, live ids to read...}.
local low = '-'
if ARGV[4] ~= '' then low = '(' .. ARGV[4] end
local scanned = redis.call('ZRANGEBYLEX', NAMES, low, '+', 'LIMIT', 0, tonumber(ARGV[5]))
local out = {scanned[#scanned] or '', #scanned}
for _, id in ipairs(scanned) do
  local v = redis.call('HMGET', key('m', id), 'updated_at', 'ttl', 'owner')
  local ttl = tonumber(v[2]) or 0
  local live = v[1] and (ttl == 0 or tonumber(v[1]) + ttl * 1000 > NOW)
  if live and (ARGV[3] == '' or v[3] == ARGV[3]) then out[#out + 1] = id end
end
return out
