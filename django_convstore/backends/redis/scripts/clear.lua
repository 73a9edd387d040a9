--! include lib/bucket.lua
-- Deletes up to ARGV[3] conversations; once none is left, the bucket's index keys too.
-- Reply: {how many were deleted, the same, how many of them were live}.
local ids = redis.call('ZRANGE', NAMES, 0, tonumber(ARGV[3]) - 1)
local live, messages, bytes = 0, 0, 0
for _, id in ipairs(ids) do
  local v = erase(id)
  local ttl = tonumber(v[2]) or 0
  if v[1] and (ttl == 0 or tonumber(v[1]) + ttl * 1000 > NOW) then live = live + 1 end
  messages = messages + (tonumber(v[4]) or 0)
  bytes = bytes + (tonumber(v[5]) or 0) + (tonumber(v[6]) or 0)
end
if #ids < tonumber(ARGV[3]) then
  redis.call('DEL', RECENT, EXPIRY, NAMES, TOTALS)
else
  add_totals(-messages, -bytes)
end
return {#ids, #ids, live}
