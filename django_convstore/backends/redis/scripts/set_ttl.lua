--! include lib/conversation.lua
--! include lib/write.lua
-- Sets the TTL to ARGV[5] seconds ('0' = never) from now. Reply: 1, or 0 when missing.
local f = read_meta()
if not is_live(f) or not visible(f) then return 0 end
local had_ttl = num(f.ttl) > 0
f.ttl, f.updated_at, f.version = ARGV[5], NOW_S, num(f.version) + 1
expire_keys(f, false)
redis.call('HSET', M, 'ttl', f.ttl, 'updated_at', NOW_S, 'kexp', f.kexp, 'version', f.version)
index(f)
index_expiry(f, had_ttl)
return 1
