-- Bookkeeping shared by the writing conversation scripts (after lib/conversation.lua).

local function add_totals(messages, bytes)
  if messages ~= 0 then redis.call('HINCRBY', TOTALS, 'messages', messages) end
  if bytes ~= 0 then redis.call('HINCRBY', TOTALS, 'bytes', bytes) end
end

-- Drops the messages of the conversation described by f (its data, offsets and ids).
local function drop_messages(f)
  redis.call('UNLINK', D, X, I)
  add_totals(-num(f.message_count), -num(f.size))
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
    add_totals(0, -num(f.msize))
    redis.call('DEL', M)
  else
    redis.call('ZADD', NAMES, 0, CID)
  end
  local new = {created_at = NOW_S, updated_at = NOW_S, ttl = ttl, message_count = 0,
    size = 0, msize = 0, version = num(f and f.version) + 1}
  if ACTING ~= '' then new.owner = string.sub(ACTING, 2) end
  return new
end

-- Stores a batch as the conversation's only messages; returns their count and bytes.
local function write_all(payload, offsets, ids)
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

-- Writes f's fixed fields to the meta hash.
local function save_meta(f)
  redis.call('HSET', M, 'created_at', f.created_at, 'updated_at', f.updated_at, 'ttl', f.ttl,
    'message_count', f.message_count, 'size', f.size, 'msize', f.msize, 'version', f.version)
  if f.owner then redis.call('HSET', M, 'owner', f.owner) end
end

-- Gives the data, offsets and ids keys the conversation's expiry (nil: none).
local function expire_keys(exp)
  if exp then
    redis.call('PEXPIREAT', D, exp)
    redis.call('PEXPIREAT', X, exp)
    redis.call('PEXPIREAT', I, exp)
  else
    redis.call('PERSIST', D)
    redis.call('PERSIST', X)
    redis.call('PERSIST', I)
  end
end

-- Indexes the conversation after a write that moved updated_at (and so its expiry).
local function index(f)
  redis.call('ZADD', RECENT, f.updated_at, CID)
  local exp = expires_at(f)
  if exp then redis.call('ZADD', EXPIRY, exp, CID) end
  if f.owner then redis.call('ZADD', OWNERS .. f.owner, f.updated_at, CID) end
  if num(f.message_count) > 0 then expire_keys(exp) end
end
