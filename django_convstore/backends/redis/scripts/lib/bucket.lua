-- Scripts about one bucket of conversations (listing, stats, cleanup, clear).
-- KEYS: recent, expiry, names, totals of the bucket (see layout.py).
-- ARGV[1] the bucket's key prefix, ARGV[2] now (ms); each script's own arguments follow.
local RECENT, EXPIRY, NAMES, TOTALS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local PREFIX, NOW = ARGV[1], tonumber(ARGV[2])

-- A key of conversation id: part is m (meta), d (data), x (offsets) or i (ids).
local function key(part, id) return PREFIX .. part .. ':' .. id end

-- Ids whose TTL has run out (their meta hash and index entries await cleanup).
local function expired_ids()
  return redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW)
end

local function set_of(list)
  local set = {}
  for _, id in ipairs(list) do set[id] = true end
  return set
end

-- Deletes conversation id's keys and index entries; returns its meta fields
-- {updated_at, ttl, owner, message_count, size, msize}.
local function erase(id)
  local m = key('m', id)
  local v = redis.call('HMGET', m, 'updated_at', 'ttl', 'owner', 'message_count', 'size', 'msize')
  redis.call('UNLINK', m, key('d', id), key('x', id), key('i', id))
  redis.call('ZREM', RECENT, id)
  redis.call('ZREM', EXPIRY, id)
  redis.call('ZREM', NAMES, id)
  if v[3] then redis.call('ZREM', PREFIX .. 'owner:' .. v[3], id) end
  return v
end
