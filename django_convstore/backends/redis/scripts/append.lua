-- Appends the messages whose id the conversation does not hold yet; creates the
-- conversation (with the default TTL) when it is missing or expired.
-- KEYS and ARGV[1..4] as in lib/conversation.lua; ARGV[5] the default ttl, ARGV[6] '1'
-- to move updated_at, ARGV[7] the messages as a JSON array ('' for none), ARGV[8] their
-- offsets in it, ARGV[9] their ids joined by '\n'.
-- Reply: {0, meta} (meta as lib/conversation.lua's reply) or {1}: another owner's.
-- The hottest script, so it is written out without the shared helpers: Redis runs a
-- script's whole text on every call, and each helper is a closure built each time.
local M, D, X, I = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local CID, NOW_S, ACTING = ARGV[2], ARGV[3], ARGV[4]
local NOW = tonumber(NOW_S)

local flat = redis.call('HGETALL', M)
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
local before_count = tonumber(f.message_count) or 0
local before_bytes = (tonumber(f.size) or 0) + (tonumber(f.msize) or 0)
local created = #flat == 0 or (ttl > 0 and tonumber(f.updated_at) + ttl * 1000 <= NOW)
if created then
  if #flat > 0 then -- expired: clear what it left behind
    redis.call('UNLINK', D, X, I)
    if f.owner then redis.call('ZREM', ARGV[1] .. f.owner, CID) end
    if ttl > 0 then redis.call('ZREM', KEYS[6], CID) end
    redis.call('DEL', M)
  else
    redis.call('ZADD', KEYS[7], 0, CID)
  end
  f = {created_at = NOW_S, updated_at = NOW_S, ttl = ARGV[5], message_count = 0, size = 0,
    msize = 0, kexp = 0, version = f.version}
  if ACTING ~= '' then f.owner = string.sub(ACTING, 2) end
  custom = {}
  ttl = tonumber(ARGV[5]) or 0
elseif ACTING ~= '' and '=' .. (f.owner or '') ~= ACTING then
  return {1}
end

local function reply(updated, count)
  return {0, {f.created_at, updated, f.ttl, f.owner or false, count, unpack(custom)}}
end

local payload, offsets = ARGV[7], ARGV[8]
local n, size = tonumber(f.message_count) or 0, tonumber(f.size) or 0
local added = 0
if n == 0 then
  if payload ~= '' then
    local ids = {}
    for id in string.gmatch(ARGV[9], '[^\n]+') do ids[#ids + 1] = id end
    redis.call('SET', D, payload)
    redis.call('SET', X, offsets)
    for i = 1, #ids, 1000 do
      redis.call('SADD', I, unpack(ids, i, math.min(i + 999, #ids)))
    end
    added, size = #ids, #payload
  elseif not created then
    return reply(f.updated_at, 0)
  end
else
  local ids, kept = {}, {}
  for id in string.gmatch(ARGV[9], '[^\n]+') do ids[#ids + 1] = id end
  local total = #ids
  if total == 1 then
    if redis.call('SADD', I, ids[1]) == 1 then kept[1] = 1 end
  else -- one SMISMEMBER and one SADD, whatever the batch size
    local fresh = {}
    for i = 1, total, 1000 do
      local known = redis.call('SMISMEMBER', I, unpack(ids, i, math.min(i + 999, total)))
      for j = 1, #known do
        if known[j] == 0 then
          kept[#kept + 1] = i + j - 1
          fresh[#fresh + 1] = ids[i + j - 1]
        end
      end
    end
    for i = 1, #fresh, 1000 do
      redis.call('SADD', I, unpack(fresh, i, math.min(i + 999, #fresh)))
    end
  end
  added = #kept
  if added == 0 then return reply(f.updated_at, n) end
  if added < total then -- rebuild the batch from the new messages only
    local parts, offs, at = {}, {}, 1
    for _, j in ipairs(kept) do
      local first = struct.unpack('<I4', offsets, 4 * j - 3) + 1
      local last = #payload - 1
      if j < total then last = struct.unpack('<I4', offsets, 4 * j + 1) - 1 end
      parts[#parts + 1] = string.sub(payload, first, last)
      offs[#offs + 1] = struct.pack('<I4', at)
      at = at + last - first + 2
    end
    payload, offsets = '[' .. table.concat(parts, ',') .. ']', table.concat(offs)
  end
  -- The batch's '[' replaces the closing ']', then becomes the separating ','.
  redis.call('SETRANGE', D, size - 1, payload)
  redis.call('SETRANGE', D, size - 1, ',')
  local shifted
  if added == 1 then
    shifted = struct.pack('<I4', size)
  else -- every offset moves by size - 1: unpacked and packed 1,000 at a time
    local parts = {}
    for first = 1, added, 1000 do
      local count = math.min(1000, added - first + 1)
      local format = '<' .. string.rep('I4', count)
      local values = {struct.unpack(format, offsets, 4 * first - 3)}
      for j = 1, count do values[j] = values[j] + size - 1 end
      parts[#parts + 1] = struct.pack(format, unpack(values, 1, count))
    end
    shifted = table.concat(parts)
  end
  redis.call('SETRANGE', X, 4 * n, shifted)
  size = size - 1 + #payload
end

n = n + added
local version = (tonumber(f.version) or 0) + 1
local moved = created or ARGV[6] == '1'
local updated = f.updated_at
if moved then updated = NOW_S end
-- The data, offsets and ids keys expire an eighth of the TTL after the conversation
-- (see lib/write.lua, expire_keys): only now and then does an append move them.
local kexp = tonumber(f.kexp) or 0
if ttl > 0 and added > 0 then
  local exp = tonumber(updated) + ttl * 1000
  if kexp < exp or n == added then
    kexp = exp + math.floor(ttl * 125)
    redis.call('PEXPIREAT', D, kexp)
    redis.call('PEXPIREAT', X, kexp)
    redis.call('PEXPIREAT', I, kexp)
  end
end
if created then
  redis.call('HSET', M, 'created_at', NOW_S, 'updated_at', NOW_S, 'ttl', f.ttl,
    'message_count', n, 'size', size, 'msize', 0, 'kexp', kexp, 'version', version)
  if f.owner then redis.call('HSET', M, 'owner', f.owner) end
  if ttl > 0 then redis.call('ZADD', KEYS[6], NOW + ttl * 1000, CID) end
else
  redis.call('HSET', M, 'updated_at', updated, 'message_count', n, 'size', size,
    'kexp', kexp, 'version', version)
end
if moved then
  redis.call('ZADD', KEYS[5], updated, CID)
  if f.owner then redis.call('ZADD', ARGV[1] .. f.owner, updated, CID) end
end
local delta_count = n - before_count
local delta_bytes = size + (tonumber(f.msize) or 0) - before_bytes
if delta_count ~= 0 or delta_bytes ~= 0 then
  redis.call('BITFIELD', KEYS[8], 'INCRBY', 'i64', 0, string.format('%d', delta_count),
    'INCRBY', 'i64', 64, string.format('%d', delta_bytes))
end
return reply(updated, n)
