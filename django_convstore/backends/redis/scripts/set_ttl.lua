--! include lib/conversation.lua
--! include lib/write.lua
-- Sets the TTL to ARGV[5] seconds ('0' = never) from now. Reply: 1, or 0 when missing.
local f = read_meta()
if not is_live(f) or not visible(f) then return 0 end
if num(f.ttl) > 0 and ARGV[5] == '0' then redis.call('ZREM', EXPIRY, CID) end
f.ttl, f.updated_at, f.version = ARGV[5], NOW_S, num(f.version) + 1
redis.call('HSET', M, 'ttl', f.ttl, 'updated_at', NOW_S, 'version', f.version)
index(f)
return 1
