-- Reads a conversation; KEYS and ARGV[1..4] as in lib/conversation.lua (only the meta,
-- data and offsets keys are used). ARGV[5] how many of the newest messages ('' = all),
-- ARGV[6] the most bytes of messages to return.
-- Reply: {2} when missing, expired or not the acting owner's (no message is read then);
-- {0, meta, the messages' JSON objects joined by ','}; or, past the byte limit,
-- {0, meta, false, start, size, version, created_at}: the caller reads the data from
-- offset `start` itself, in a transaction that checks size, version and created_at.
-- Written out without the shared helpers, as append.lua is.
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return {2} end
local f, custom = {}, {}
for i = 1, #flat, 2 do
  local k, v = flat[i], flat[i + 1]
  f[k] = v
  if string.byte(k, 2) == 58 and string.byte(k, 1) == 109 then -- "m:<key>": custom
    custom[#custom + 1] = k
    custom[#custom + 1] = v
  end
end
local ttl = tonumber(f.ttl) or 0
if ttl > 0 and tonumber(f.updated_at) + ttl * 1000 <= tonumber(ARGV[3]) then return {2} end
if ARGV[4] ~= '' and '=' .. (f.owner or '') ~= ARGV[4] then return {2} end
local meta = {f.created_at, f.updated_at, f.ttl, f.owner or false, f.message_count,
  unpack(custom)}
local n, size = tonumber(f.message_count) or 0, tonumber(f.size) or 0
local start = 1
if ARGV[5] ~= '' then
  local last = tonumber(ARGV[5])
  if last == 0 then n = 0 end
  if last < n then
    local at = 4 * (n - last)
    start = struct.unpack('<I4', redis.call('GETRANGE', KEYS[3], at, at + 3))
  end
end
if n == 0 then return {0, meta, ''} end
if size - 1 - start > tonumber(ARGV[6]) then
  return {0, meta, false, start, size, tonumber(f.version) or 0, f.created_at}
end
return {0, meta, redis.call('GETRANGE', KEYS[2], start, size - 2)}
