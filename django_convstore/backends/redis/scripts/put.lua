--! include lib/conversation.lua
--! include lib/write.lua
-- Writes a conversation exactly as given, replacing whatever has its id.
-- ARGV[5] created_at, ARGV[6] updated_at, ARGV[7] ttl, ARGV[8] owner ('' = none),
-- ARGV[9] the messages as a JSON array ('' for none), ARGV[10] their offsets,
-- ARGV[11] their ids joined by '\n', then pairs of custom metadata fields.
-- Reply: the number of messages.
local f = read_meta()
local before_messages, before_bytes = weight(f)
f = fresh(f, ARGV[7])
f.created_at, f.updated_at, f.owner = ARGV[5], ARGV[6], nil
if ARGV[8] ~= '' then f.owner = ARGV[8] end
f.message_count, f.size = write_all(ARGV[9], ARGV[10], ARGV[11])
set_metadata(f, 12)
expire_keys(f, true)
save_meta(f)
add_totals(f.message_count - before_messages, f.size + num(f.msize) - before_bytes)
index(f)
index_expiry(f, false)
return f.message_count
