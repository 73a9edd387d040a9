--! include lib/conversation.lua
--! include lib/write.lua
-- Appends the messages whose id the conversation does not hold yet; creates the
-- conversation (with the default TTL) when it is missing or expired.
-- ARGV[5] default ttl, ARGV[6] '1' to move updated_at, ARGV[7] the messages as a JSON
-- array ('' for none), ARGV[8] their offsets in it, ARGV[9] their ids joined by '\n'.
-- Reply: {OK, meta} or {MISMATCH} (nothing written).
local f = read_meta()
local created = not is_live(f)
if created then
  f = fresh(f, ARGV[5])
elseif not visible(f) then
  return {MISMATCH}
end
local payload, offsets = ARGV[7], ARGV[8]
local ids = {}
for id in string.gmatch(ARGV[9], '[^\n]+') do ids[#ids + 1] = id end
local n, size = num(f.message_count), num(f.size)
local new = ids
if n > 0 then
  new = {}
  local kept = {}
  for j = 1, #ids do
    if redis.call('SADD', I, ids[j]) == 1 then
      new[#new + 1] = ids[j]
      kept[#kept + 1] = j
    end
  end
  if #new == 0 then return {OK, reply(f)} end
  if #new < #ids then
    -- Rebuild the batch from the new messages only.
    local function offset(j) return struct.unpack('<I4', offsets, 4 * j - 3) end
    local parts, offs, at = {}, {}, 1
    for _, j in ipairs(kept) do
      local first = offset(j) + 1
      local last = #payload - 1
      if j < #ids then last = offset(j + 1) - 1 end
      parts[#parts + 1] = string.sub(payload, first, last)
      offs[#offs + 1] = struct.pack('<I4', at)
      at = at + last - first + 2
    end
    payload, offsets = '[' .. table.concat(parts, ',') .. ']', table.concat(offs)
  end
  -- The batch's '[' replaces the closing ']' and becomes the separating ','.
  redis.call('SETRANGE', D, size - 1, ',' .. string.sub(payload, 2))
  local shifted = {}
  for j = 1, #new do
    shifted[j] = struct.pack('<I4', struct.unpack('<I4', offsets, 4 * j - 3) + size - 1)
  end
  redis.call('SETRANGE', X, 4 * n, table.concat(shifted))
  size = size - 1 + #payload
elseif #ids > 0 then
  redis.call('SET', D, payload)
  redis.call('SET', X, offsets)
  for i = 1, #ids, 1000 do
    redis.call('SADD', I, unpack(ids, i, math.min(i + 999, #ids)))
  end
  size = #payload
elseif not created then
  return {OK, reply(f)}
end
add_totals(#new, size - num(f.size))
f.message_count, f.size, f.version = n + #new, size, num(f.version) + 1
if created then
  save_meta(f)
  index(f)
elseif ARGV[6] == '1' then
  f.updated_at = NOW_S
  redis.call('HSET', M, 'updated_at', NOW_S, 'message_count', f.message_count, 'size', size,
    'version', f.version)
  index(f)
else
  redis.call('HSET', M, 'message_count', f.message_count, 'size', size, 'version', f.version)
  if n == 0 then expire_keys(expires_at(f)) end
end
return {OK, reply(f)}
