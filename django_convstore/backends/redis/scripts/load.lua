-- Reads a conversation. KEYS: meta, data, offsets.
-- ARGV[1] now (ms), ARGV[2] the acting owner ('' = unscoped, '=<owner>'), ARGV[3] how
-- many of the newest messages ('' = all), ARGV[4] the most bytes of messages to return.
-- Reply: nil when missing, expired or not visible (no message is read then);
-- {meta, messages joined by ','} ; or, past the byte limit, {meta, nil, start}: the
-- caller reads the data from offset `start` itself, in a transaction.
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return nil end
local f = {}
for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
local ttl = tonumber(f.ttl) or 0
if ttl > 0 and tonumber(f.updated_at) + ttl * 1000 <= tonumber(ARGV[1]) then return nil end
if ARGV[2] ~= '' and '=' .. (f.owner or '') ~= ARGV[2] then return nil end
local n, size = tonumber(f.message_count) or 0, tonumber(f.size) or 0
local start = 1
if ARGV[3] ~= '' then
  local last = tonumber(ARGV[3])
  if last == 0 then n = 0 end
  if last < n then
    start = struct.unpack('<I4', redis.call('GETRANGE', KEYS[3], 4 * (n - last), 4 * (n - last) + 3))
  end
end
if n == 0 then return {flat, ''} end
if size - 1 - start > tonumber(ARGV[4]) then return {flat, false, start} end
return {flat, redis.call('GETRANGE', KEYS[2], start, size - 2)}
