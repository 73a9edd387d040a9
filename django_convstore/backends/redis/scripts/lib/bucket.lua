-- Scripts about one bucket of conversations (listing, stats, cleanup, clear).
-- KEYS: recent, expiry, names, totals of the bucket (see layout.py).
-- ARGV[1] the bucket's key prefix, ARGV[2] now (ms); each script's own arguments follow.
local RECENT, EXPIRY, NAMES, TOTALS = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local PREFIX, NOW = ARGV[1], tonumber(ARGV[2])

-- A key of conversation id: part is m (meta), d (data), x (offsets) or i (ids).
local function key(part, id) return PREFIX .. part .. ':' .. id end

-- Ids whose TTL has run out (their meta hash and index entries await cleanup), at most
-- `limit` (nil: all) of the index's candidates. The expiry index holds, for every
-- conversation with a TTL, a time at or before its expiry (appends move the expiry on
-- without touching the index), so each candidate is checked against its meta hash, and
-- one still live gets its real expiry in the index. Returns the ids and how many
-- candidates were looked at.
local function expired_ids(limit)
  local candidates
  if limit then
    candidates = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW, 'LIMIT', 0, limit)
  else
    candidates = redis.call('ZRANGEBYSCORE', EXPIRY, '-inf', NOW)
  end
  local dead = {}
  for _, id in ipairs(candidates) do
    local v = redis.call('HMGET', key('m', id), 'updated_at', 'ttl')
    local ttl = tonumber(v[2]) or 0
    if v[1] and ttl > 0 and tonumber(v[1]) + ttl * 1000 > NOW then
      redis.call('ZADD', EXPIRY, tonumber(v[1]) + ttl * 1000, id)
    else
      dead[#dead + 1] = id
    end
  end
  return dead, #candidates
end

local function set_of(list)
  local set = {}
  for _, id in ipairs(list) do set[id] = true end
  return set
end

-- The bucket's totals: messages, bytes.
local function totals()
  local t = redis.call('BITFIELD', TOTALS, 'GET', 'i64', 0, 'GET', 'i64', 64)
  return t[1], t[2]
end

local function add_totals(messages, bytes)
  if messages ~= 0 or bytes ~= 0 then
    redis.call('BITFIELD', TOTALS, 'INCRBY', 'i64', 0, string.format('%d', messages),
      'INCRBY', 'i64', 64, string.format('%d', bytes))
  end
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
