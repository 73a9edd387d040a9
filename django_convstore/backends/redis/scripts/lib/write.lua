-- Bookkeeping shared by the writing conversation scripts (after lib/conversation.lua).

-- Adds to the bucket's totals: two signed 64-bit counters, messages and bytes.
local function add_totals(messages, bytes)
  if messages ~= 0 or bytes ~= 0 then
    redis.call('BITFIELD', TOTALS, 'INCRBY', 'i64', 0, string.format('%d', messages),
      'INCRBY', 'i64', 64, string.format('%d', bytes))
  end
end

-- What the conversation adds to the bucket's totals: its messages and bytes.
local function weight(f)
  if not f then return 0, 0 end
  return num(f.message_count), num(f.size) + num(f.msize)
end

-- Drops the messages of the conversation described by f (its data, offsets and ids).
local function drop_messages(f)
  redis.call('UNLINK', D, X, I)
  f.kexp = 0
end

-- Removes f's owner-index and expiry entries (recency and name entries are rewritten).
local function unindex(f)
  if f.owner then redis.call('ZREM', OWNERS .. f.owner, CID) end
  if num(f.ttl) > 0 then redis.call('ZREM', EXPIRY, CID) end
end

-- Clears whatever an absent or expired conversation left behind; returns the meta table
-- of a new, empty conversation created now (owned by the acting owner).
local function fresh(f, ttl)
  if f then
    drop_messages(f)
    unindex(f)
    redis.call('DEL', M)
  else
    redis.call('ZADD', NAMES, 0, CID)
  end
  local new = {created_at = NOW_S, updated_at = NOW_S, ttl = ttl, message_count = 0,
    size = 0, msize = 0, kexp = 0, version = num(f and f.version) + 1}
  if ACTING ~= '' then new.owner = string.sub(ACTING, 2) end
  return new
end

-- Stores a batch as the conversation's only messages (after drop_messages or fresh);
-- returns their count and bytes. A big batch comes in staging keys (KEYS[9..11]: data,
-- offsets, ids) that plain commands wrote earlier in the same transaction, so its bytes
-- never pass through Lua: the keys are renamed into place.
local function write_all(payload, offsets, ids)
  if #KEYS > 8 then
    local count = redis.call('SCARD', KEYS[11])
    if count == 0 then return 0, 0 end
    redis.call('RENAME', KEYS[9], D)
    redis.call('RENAME', KEYS[10], X)
    redis.call('RENAME', KEYS[11], I)
    return count, redis.call('STRLEN', D)
  end
  if payload == '' then return 0, 0 end
  redis.call('SET', D, payload)
  redis.call('SET', X, offsets)
  local list = {}
  for id in string.gmatch(ids, '[^\n]+') do list[#list + 1] = id end
  for i = 1, #list, 1000 do
    redis.call('SADD', I, unpack(list, i, math.min(i + 999, #list)))
  end
  return #list, #payload
end

-- Sets the custom metadata fields given as pairs ARGV[first..] ('m:<key>', JSON);
-- keeps f.msize (bytes of keys and values) up to date.
local function set_metadata(f, first)
  if first > #ARGV then return end
  local size = num(f.msize)
  for i = first, #ARGV, 2 do
    local field, value = ARGV[i], ARGV[i + 1]
    local old = f[field]
    if old then size = size - #old else size = size + #field - 2 end
    size = size + #value
    f[field] = value
  end
  f.msize = size
  for i = first, #ARGV, 1000 do
    redis.call('HSET', M, unpack(ARGV, i, math.min(i + 999, #ARGV)))
  end
end

-- Keeps the data, offsets and ids keys alive until the conversation expires (Redis then
-- frees them by itself): they expire a little after it (an eighth of the TTL), so the
-- appends of an active conversation only move their expiry now and then. fresh_keys: the
-- keys were just written without an expiry. Updates f.kexp (their expiry, 0 = none).
local function expire_keys(f, fresh_keys)
  if num(f.message_count) == 0 then
    f.kexp = 0
    return
  end
  local exp = expires_at(f)
  local current = num(f.kexp)
  if not exp then
    if current > 0 and not fresh_keys then
      redis.call('PERSIST', D)
      redis.call('PERSIST', X)
      redis.call('PERSIST', I)
    end
    f.kexp = 0
    return
  end
  local slack = math.floor(num(f.ttl) * 125)
  if fresh_keys or current < exp or current > exp + slack then
    current = exp + slack
    redis.call('PEXPIREAT', D, current)
    redis.call('PEXPIREAT', X, current)
    redis.call('PEXPIREAT', I, current)
  end
  f.kexp = current
end

-- Puts the conversation in the expiry index at its exact expiry (writes that may move it
-- earlier: the index holds a time at or before each conversation's expiry, see bucket.lua).
local function index_expiry(f, had_ttl)
  local exp = expires_at(f)
  if exp then
    redis.call('ZADD', EXPIRY, exp, CID)
  elseif had_ttl then
    redis.call('ZREM', EXPIRY, CID)
  end
end

-- Indexes the conversation by recency (and owner) after a write that moved updated_at.
local function index(f)
  redis.call('ZADD', RECENT, f.updated_at, CID)
  if f.owner then redis.call('ZADD', OWNERS .. f.owner, f.updated_at, CID) end
end

-- Writes f's fields to the meta hash.
local function save_meta(f)
  redis.call('HSET', M, 'created_at', f.created_at, 'updated_at', f.updated_at, 'ttl', f.ttl,
    'message_count', f.message_count, 'size', f.size, 'msize', f.msize, 'kexp', f.kexp,
    'version', f.version)
  if f.owner then redis.call('HSET', M, 'owner', f.owner) end
end
