--! include lib/conversation.lua
--! include lib/write.lua
--! include lib/remove.lua
-- Removes the last ARGV[5] messages (all when there are fewer).
-- Reply: {OK, the removed messages' JSON objects joined by ','} or {MISSING}.
local f = read_meta()
if not is_live(f) or not visible(f) then return {MISSING} end
local n = num(f.message_count)
if n == 0 then return {OK, ''} end
return {OK, remove_from(f, math.max(0, n - tonumber(ARGV[5])), true)}
