--! include lib/conversation.lua
--! include lib/write.lua
-- Deletes the conversation. Acting for an owner, only a live conversation of that owner.
-- Reply: 1 when a live conversation was deleted, else 0.
local v = redis.call('HMGET', M, 'updated_at', 'ttl', 'owner', 'message_count', 'size', 'msize')
if not v[1] then return 0 end
local f = {updated_at = v[1], ttl = v[2], owner = v[3] or nil, message_count = v[4],
  size = v[5], msize = v[6]}
local live = is_live(f)
if ACTING ~= '' and not (live and visible(f)) then return 0 end
redis.call('UNLINK', M, D, X, I)
unindex(f)
redis.call('ZREM', RECENT, CID)
redis.call('ZREM', NAMES, CID)
local messages, bytes = weight(f)
add_totals(-messages, -bytes)
if live then return 1 end
return 0
