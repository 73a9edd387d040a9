-- Removing messages from the end (after lib/conversation.lua and lib/write.lua).

-- Garbage (bytes past the live part) a string may keep before it is rewritten.
local SLACK = 4096

-- Rewrites key to its first `live` bytes when more than half of it is garbage, so the
-- rewrite (cost: the live bytes) never costs more than what was removed before it.
local function compact(key, live)
  local garbage = redis.call('STRLEN', key) - live
  if garbage > SLACK and garbage > live then
    redis.call('SET', key, redis.call('GETRANGE', key, 0, live - 1), 'KEEPTTL')
  end
end

-- Keeps the first `keep` messages (0 <= keep < message_count) and updates f; returns the
-- removed messages' JSON objects joined by ',' when want_text.
local function remove_from(f, keep, want_text)
  local n, size = num(f.message_count), num(f.size)
  local text
  if keep == 0 then
    if want_text then text = redis.call('GETRANGE', D, 1, size - 2) end
    redis.call('UNLINK', D, X, I)
    size = 0
  else
    local start = struct.unpack('<I4', redis.call('GETRANGE', X, 4 * keep, 4 * keep + 3))
    text = redis.call('GETRANGE', D, start, size - 2)
    local removed = cjson.decode('[' .. text .. ']')
    local ids = {}
    for j = 1, #removed do ids[j] = removed[j].id end
    for i = 1, #ids, 1000 do
      redis.call('SREM', I, unpack(ids, i, math.min(i + 999, #ids)))
    end
    redis.call('SETRANGE', D, start - 1, ']')
    size = start
    compact(D, size)
    compact(X, 4 * keep)
  end
  add_totals(keep - n, size - num(f.size))
  f.message_count, f.size = keep, size
  f.updated_at, f.version = NOW_S, num(f.version) + 1
  expire_keys(f, false)
  redis.call('HSET', M, 'updated_at', NOW_S, 'message_count', keep, 'size', size,
    'kexp', f.kexp, 'version', f.version)
  index(f)
  return text
end
