--! include lib/conversation.lua
--! include lib/write.lua
-- Creates the conversation unless a live one has this id (whoever owns it).
-- ARGV[5..] as for save.lua. Reply: {OK, meta} or {TAKEN} (nothing written).
local f = read_meta()
if is_live(f) then return {TAKEN} end
local before_messages, before_bytes = weight(f)
f = fresh(f, ARGV[5])
f.message_count, f.size = write_all(ARGV[6], ARGV[7], ARGV[8])
set_metadata(f, 9)
expire_keys(f, true)
save_meta(f)
add_totals(f.message_count - before_messages, f.size + num(f.msize) - before_bytes)
index(f)
index_expiry(f, false)
return {OK, reply(f)}
