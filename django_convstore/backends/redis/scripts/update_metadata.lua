--! include lib/conversation.lua
--! include lib/write.lua
-- Merges (ARGV[5] = '0') or replaces (ARGV[5] = '1') the custom metadata with the
-- pairs of fields that follow. Reply: {OK, meta} or {MISSING}. Never reads messages.
local f = read_meta()
if not is_live(f) or not visible(f) then return {MISSING} end
local old_msize = num(f.msize)
if ARGV[5] == '1' then
  local stale = {}
  for k in pairs(f) do
    if string.sub(k, 1, 2) == 'm:' then stale[#stale + 1] = k end
  end
  for _, k in ipairs(stale) do f[k] = nil end
  for i = 1, #stale, 1000 do
    redis.call('HDEL', M, unpack(stale, i, math.min(i + 999, #stale)))
  end
  f.msize = 0
end
set_metadata(f, 6)
f.updated_at, f.version = NOW_S, num(f.version) + 1
expire_keys(f, false)
redis.call('HSET', M, 'updated_at', NOW_S, 'msize', f.msize, 'kexp', f.kexp,
  'version', f.version)
add_totals(0, num(f.msize) - old_msize)
index(f)
return {OK, reply(f)}
