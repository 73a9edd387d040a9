-- Scripts about one conversation.
-- KEYS: meta, data, offsets, ids, recent, expiry, names, totals (see layout.py).
-- ARGV[1] the bucket's owner-index key prefix, ARGV[2] the conversation id,
-- ARGV[3] now (ms), ARGV[4] the acting owner ('' = unscoped, '=<owner>');
-- each script's own arguments follow.
local M, D, X, I = KEYS[1], KEYS[2], KEYS[3], KEYS[4]
local RECENT, EXPIRY, NAMES, TOTALS = KEYS[5], KEYS[6], KEYS[7], KEYS[8]
local OWNERS, CID, NOW_S, ACTING = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local NOW = tonumber(NOW_S)
-- The first element of every reply.
local OK, MISMATCH, MISSING, TAKEN = 0, 1, 2, 3

local function num(v) return tonumber(v) or 0 end

-- The meta hash as a table (field -> value), or nil when there is none.
local function read_meta()
  local flat = redis.call('HGETALL', M)
  if #flat == 0 then return nil end
  local f = {}
  for i = 1, #flat, 2 do f[flat[i]] = flat[i + 1] end
  return f
end

-- When the conversation expires (ms), or nil when it never does.
local function expires_at(f)
  local ttl = num(f.ttl)
  if ttl > 0 then return num(f.updated_at) + ttl * 1000 end
  return nil
end

local function is_live(f)
  if not f then return false end
  local exp = expires_at(f)
  return exp == nil or exp > NOW
end

-- Whether the acting owner may see and change this conversation.
local function visible(f)
  return ACTING == '' or '=' .. (f.owner or '') == ACTING
end

-- The metadata reply: created_at, updated_at, ttl, owner (false: none), message_count,
-- then the custom metadata fields and values.
local function reply(f)
  local out = {f.created_at, f.updated_at, f.ttl, f.owner or false, f.message_count}
  for k, v in pairs(f) do
    if string.sub(k, 1, 2) == 'm:' then
      out[#out + 1] = k
      out[#out + 1] = v
    end
  end
  return out
end
