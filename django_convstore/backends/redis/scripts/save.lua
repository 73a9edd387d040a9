--! include lib/conversation.lua
--! include lib/write.lua
-- Replaces the messages; creates the conversation when it is missing or expired.
-- ARGV[5] ttl (s, '0' = never), ARGV[6] the messages as a JSON array ('' for none),
-- ARGV[7] their offsets in it, ARGV[8] their ids joined by '\n', then pairs of
-- custom metadata fields merged over the existing ones.
-- Reply: {OK, meta} or {MISMATCH} (nothing written).
local f = read_meta()
local before_messages, before_bytes = weight(f)
local had_ttl = false
if is_live(f) then
  if not visible(f) then return {MISMATCH} end
  had_ttl = num(f.ttl) > 0
  drop_messages(f)
  f.updated_at, f.ttl, f.version = NOW_S, ARGV[5], num(f.version) + 1
else
  f = fresh(f, ARGV[5])
end
f.message_count, f.size = write_all(ARGV[6], ARGV[7], ARGV[8])
set_metadata(f, 9)
expire_keys(f, true)
save_meta(f)
add_totals(f.message_count - before_messages, f.size + num(f.msize) - before_bytes)
index(f)
index_expiry(f, had_ttl)
return {OK, reply(f)}
