--! include lib/conversation.lua
--! include lib/write.lua
--! include lib/remove.lua
-- Keeps the first ARGV[5] messages. Reply: {OK, how many were removed, meta} or {MISSING}.
local f = read_meta()
if not is_live(f) or not visible(f) then return {MISSING} end
local n, keep = num(f.message_count), tonumber(ARGV[5])
if keep >= n then return {OK, 0, reply(f)} end
remove_from(f, keep, false)
return {OK, n - keep, reply(f)}
