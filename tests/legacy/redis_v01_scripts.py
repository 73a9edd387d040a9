"""django-convstore 0.1's Redis key layout and Lua scripts, verbatim (for writing real 0.1 data).

Copied unchanged from ``django_convstore/backends/redis_scripts.py`` of 0.1
(commit 4a71b84); :mod:`tests.legacy.redis_v01` calls them the way 0.1's
``RedisStore`` did. Everything below this paragraph is the original text.

The key layout and Lua scripts of :class:`~django_convstore.backends.redis.RedisStore`.

Every key of a store starts with ``<base> = <KEY_PREFIX>:<NAMESPACE>`` (neither
may contain ``{`` or ``}``)::

    <base>:{<id>}:meta     hash: created_at, updated_at (ms), ttl (s, 0 = never),
                           message_count, owner (absent = none), and one field
                           "m:<key>" per custom metadata key (its JSON value)
    <base>:{<id>}:msgs     string: the messages' JSON documents joined by ","
    <base>:{<id>}:offs     string: each message's start offset in msgs, as
                           10 zero-padded digits, oldest first
    <base>:index           sorted set: id -> updated_at
    <base>:expiry          sorted set: id -> expires_at (ms; +inf = never)
    <base>:ids             sorted set, all scores 0: ids in byte order (prefix search, iteration)
    <base>:owner:{<owner>} sorted set: id -> updated_at, one per owner
    <base>:ledger          hash: id -> "<message_count>|<bytes>|<owner>"
    <base>:totals          hash: messages, bytes (sums over the ledger)

Appending is ``APPEND`` on both strings (amortised O(1), whatever the length);
loading everything is one ``GET`` that is already a JSON array body; ``last=N``
reads N offsets and then only the tail of ``msgs`` with ``GETRANGE``.

``<id>`` and ``<owner>`` are escaped (``%`` → ``%25``, ``{`` → ``%7B``,
``}`` → ``%7D``) so the braces around them form a Redis Cluster hash tag: all
keys of one conversation hash to the same slot. They carry the same absolute
expiry (``PEXPIREAT expires_at``), so Redis drops them together. The index
keys outlive an expired conversation until ``cleanup()``; readers skip ids
whose ``expiry`` score has passed.

Each operation is one script, so writes are atomic and every call is one
round trip (``EVALSHA``). Times are the application's clock
(``django_convstore.clock.now_ms``), passed to every script as ``now``; the
scripts never call ``TIME``.

Script arguments: the store keys come first in ``KEYS`` (index, expiry, ids,
ledger, totals), then the conversation's meta, msgs and offs keys where the
script is about one conversation; ``ARGV[1]`` is always ``<base>``, from which
the scripts build owner-index keys (and, store-wide, conversation keys).
"""

from __future__ import annotations

#: The fixed "store" keys passed as KEYS[1..5] to every store-wide script.
STORE_KEY_SUFFIXES = ("index", "expiry", "ids", "ledger", "totals")
#: Digits per offset in the ``offs`` key.
OFFSET_WIDTH = 10


def escape_tag(value: str) -> str:
    """Escape ``value`` for use inside a ``{…}`` hash tag (must match the Lua ``esc``)."""
    return value.replace("%", "%25").replace("{", "%7B").replace("}", "%7D")


def conversation_keys(base: str, conversation_id: str) -> tuple[str, str, str]:
    """The ``(meta, msgs, offs)`` keys of one conversation; all share one hash slot."""
    tag = f"{base}:{{{escape_tag(conversation_id)}}}"
    return f"{tag}:meta", f"{tag}:msgs", f"{tag}:offs"


def owner_key(base: str, owner: str) -> str:
    """The per-owner index key."""
    return f"{base}:owner:{{{escape_tag(owner)}}}"


def store_keys(base: str) -> list[str]:
    """KEYS[1..5] of every script: index, expiry, ids, ledger, totals."""
    return [f"{base}:{suffix}" for suffix in STORE_KEY_SUFFIXES]


# Reads messages: `last` is "" for all, else a count. Shared by LOAD and ITER_BATCH.
_READ = r"""
local function read_messages(msgs, offs, last)
  if last == '' then return redis.call('GET', msgs) or '' end
  local n = tonumber(last)
  if n == 0 then return '' end
  local count = redis.call('STRLEN', offs) / 10
  if n >= count then return redis.call('GET', msgs) or '' end
  local at = (count - n) * 10
  local start = tonumber(redis.call('GETRANGE', offs, at, at + 9))
  return redis.call('GETRANGE', msgs, start, -1)
end
"""

_PRELUDE = (
    r"""
local BASE = ARGV[1]
local K_INDEX, K_EXPIRY, K_IDS, K_LEDGER, K_TOTALS = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local META, MSGS, OFFS = KEYS[6], KEYS[7], KEYS[8]
local NEVER = 9007199254740992

local function esc(s)
  return (string.gsub(s, '[%%{}]', function(c) return string.format('%%%02X', string.byte(c)) end))
end
local function conv_key(id, part) return BASE .. ':{' .. esc(id) .. '}:' .. part end
local function owner_key(owner) return BASE .. ':owner:{' .. esc(owner) .. '}' end
local function int(x)
  if x == 0 then return '0' end
  return string.format('%.0f', x)
end

local function expires_at(updated, ttl)
  ttl = tonumber(ttl) or 0
  if ttl <= 0 then return nil end
  return tonumber(updated) + ttl * 1000
end

local function is_live(meta, now)
  local v = redis.call('HMGET', meta, 'updated_at', 'ttl')
  if not v[1] then return false end
  local exp = expires_at(v[1], v[2])
  return not (exp and exp <= now)
end

local function drop(meta, msgs, offs)
  redis.call('DEL', meta, msgs, offs)
end

local function set_expiry(exp)
  for _, key in ipairs({META, MSGS, OFFS}) do
    if exp and exp < NEVER then
      redis.call('PEXPIREAT', key, int(exp))
    else
      redis.call('PERSIST', key)
    end
  end
end

local function ledger_get(id)
  local entry = redis.call('HGET', K_LEDGER, id)
  if not entry then return nil end
  local c, b, o = string.match(entry, '^(%d+)|(%d+)|(.*)$')
  return tonumber(c), tonumber(b), o
end

local function unindex(id)
  local c, b, o = ledger_get(id)
  redis.call('ZREM', K_INDEX, id)
  redis.call('ZREM', K_EXPIRY, id)
  redis.call('ZREM', K_IDS, id)
  if not c then return false end
  if o ~= '' then redis.call('ZREM', owner_key(o), id) end
  redis.call('HDEL', K_LEDGER, id)
  redis.call('HINCRBY', K_TOTALS, 'messages', int(-c))
  redis.call('HINCRBY', K_TOTALS, 'bytes', int(-b))
  return true
end

local function reindex(id, updated, exp, owner, count, bytes)
  local oc, ob, oo = ledger_get(id)
  if oo and oo ~= '' and oo ~= owner then redis.call('ZREM', owner_key(oo), id) end
  redis.call('ZADD', K_INDEX, updated, id)
  redis.call('ZADD', K_EXPIRY, exp and int(exp) or 'inf', id)
  redis.call('ZADD', K_IDS, 0, id)
  if owner ~= '' then redis.call('ZADD', owner_key(owner), updated, id) end
  redis.call('HSET', K_LEDGER, id, int(count) .. '|' .. int(bytes) .. '|' .. owner)
  redis.call('HINCRBY', K_TOTALS, 'messages', int(count - (oc or 0)))
  redis.call('HINCRBY', K_TOTALS, 'bytes', int(bytes - (ob or 0)))
end

-- Appends ARGV[first..last] (message JSON) to MSGS and their offsets to OFFS;
-- returns the new message count and the bytes added.
local function push_all(first, last)
  local size = redis.call('STRLEN', MSGS)
  local before = size
  local parts, offsets = {}, {}
  for i = first, last do
    if size > 0 then
      parts[#parts + 1] = ','
      size = size + 1
    end
    offsets[#offsets + 1] = string.format('%010d', size)
    parts[#parts + 1] = ARGV[i]
    size = size + #ARGV[i]
  end
  if #offsets > 0 then
    redis.call('APPEND', MSGS, table.concat(parts))
    redis.call('APPEND', OFFS, table.concat(offsets))
  end
  return redis.call('STRLEN', OFFS) / 10, size - before
end

local function hset_pairs(key, first, last)
  for i = first, last, 1000 do
    redis.call('HSET', key, unpack(ARGV, i, math.min(i + 999, last)))
  end
end

local function metadata_bytes(key)
  local flat = redis.call('HGETALL', key)
  local n = 0
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'm:' then n = n + #flat[i] - 2 + #flat[i + 1] end
  end
  return n
end

local function expired_ids(now)
  return redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', int(now))
end

-- The end of every write: index the conversation, put its expiry on all its
-- keys and return its meta hash.
local function finish_write(id, updated, exp, owner, count, bytes)
  reindex(id, updated, exp, owner, count, bytes)
  local flat = redis.call('HGETALL', META)
  set_expiry(exp)
  return flat
end
"""
    + _READ
)

# KEYS: store keys, meta, msgs, offs. ARGV: base, id, now, ttl ("0" = never),
# owner ("-" keeps the existing owner, "=<owner>" sets it), n (metadata pairs),
# 2n metadata field/value strings ("m:<key>", JSON), then the messages' JSON.
SAVE = (
    _PRELUDE
    + r"""
local id, now_s = ARGV[2], ARGV[3]
local now, ttl, owner_arg, n = tonumber(now_s), ARGV[4], ARGV[5], tonumber(ARGV[6])
local created, owner = now_s, ''
if is_live(META, now) then
  local old = redis.call('HMGET', META, 'created_at', 'owner')
  created, owner = old[1], old[2] or ''
  redis.call('DEL', MSGS, OFFS)
else
  drop(META, MSGS, OFFS)
end
if string.sub(owner_arg, 1, 1) == '=' then owner = string.sub(owner_arg, 2) end
local first = 7 + 2 * n
local count, bytes = push_all(first, #ARGV)
redis.call('HSET', META, 'created_at', created, 'updated_at', now_s, 'ttl', ttl,
  'message_count', int(count))
if owner ~= '' then
  redis.call('HSET', META, 'owner', owner)
else
  redis.call('HDEL', META, 'owner')
end
hset_pairs(META, 7, first - 1)
local exp = expires_at(now_s, ttl)
return finish_write(id, now_s, exp, owner, count, bytes + metadata_bytes(META))
"""
)

# KEYS: store keys, meta, msgs, offs. ARGV: base, id, now, ttl ("0" = never),
# owner ("" = none), n (metadata pairs), 2n metadata field/value strings, then
# the messages' JSON. Writes nothing and returns false while a live conversation
# has the id; else replaces whatever expired one is left and returns the meta hash.
CREATE = (
    _PRELUDE
    + r"""
local id, now_s = ARGV[2], ARGV[3]
if is_live(META, tonumber(now_s)) then return false end
local ttl, owner, n = ARGV[4], ARGV[5], tonumber(ARGV[6])
drop(META, MSGS, OFFS)
local first = 7 + 2 * n
local count, bytes = push_all(first, #ARGV)
redis.call('HSET', META, 'created_at', now_s, 'updated_at', now_s, 'ttl', ttl,
  'message_count', int(count))
if owner ~= '' then redis.call('HSET', META, 'owner', owner) end
hset_pairs(META, 7, first - 1)
local exp = expires_at(now_s, ttl)
return finish_write(id, now_s, exp, owner, count, bytes + metadata_bytes(META))
"""
)

# KEYS: store keys, meta, msgs, offs. ARGV: base, id, now, replace ("1"/"0"), n,
# 2n metadata field/value strings. Returns false when the conversation is missing
# or expired, else its meta hash after the change. Never reads MSGS or OFFS.
UPDATE_METADATA = (
    _PRELUDE
    + r"""
local id, now_s = ARGV[2], ARGV[3]
if not is_live(META, tonumber(now_s)) then return false end
local old_bytes = metadata_bytes(META)
if ARGV[4] == '1' then
  local flat = redis.call('HGETALL', META)
  local stale = {}
  for i = 1, #flat, 2 do
    if string.sub(flat[i], 1, 2) == 'm:' then stale[#stale + 1] = flat[i] end
  end
  for i = 1, #stale, 1000 do
    redis.call('HDEL', META, unpack(stale, i, math.min(i + 999, #stale)))
  end
end
hset_pairs(META, 6, 5 + 2 * tonumber(ARGV[5]))
redis.call('HSET', META, 'updated_at', now_s)
local v = redis.call('HMGET', META, 'ttl', 'owner', 'message_count')
local exp = expires_at(now_s, v[1])
local _, bytes = ledger_get(id)
return finish_write(id, now_s, exp, v[2] or '', tonumber(v[3]) or 0,
  (bytes or 0) - old_bytes + metadata_bytes(META))
"""
)

# KEYS: store keys, meta, msgs, offs. ARGV: base, id, now, default ttl,
# update ("1"/"0"), then the messages' JSON.
APPEND = (
    _PRELUDE
    + r"""
local id, now_s = ARGV[2], ARGV[3]
if not is_live(META, tonumber(now_s)) then
  drop(META, MSGS, OFFS)
  unindex(id)
  redis.call('HSET', META, 'created_at', now_s, 'updated_at', now_s, 'ttl', ARGV[4],
    'message_count', 0)
end
local count, added = push_all(6, #ARGV)
if ARGV[5] == '1' then
  redis.call('HSET', META, 'updated_at', now_s, 'message_count', int(count))
else
  redis.call('HSET', META, 'message_count', int(count))
end
local v = redis.call('HMGET', META, 'updated_at', 'ttl', 'owner')
local exp = expires_at(v[1], v[2])
local _, old_bytes = ledger_get(id)
return finish_write(id, v[1], exp, v[3] or '', count, (old_bytes or 0) + added)
"""
)

# KEYS: store keys, meta, msgs, offs. ARGV: base, id, created_at, updated_at,
# ttl, owner ("" = none), n, 2n metadata strings, then the messages' JSON.
PUT = (
    _PRELUDE
    + r"""
local id, created, updated, ttl, owner = ARGV[2], ARGV[3], ARGV[4], ARGV[5], ARGV[6]
local n = tonumber(ARGV[7])
drop(META, MSGS, OFFS)
local first = 8 + 2 * n
local count, bytes = push_all(first, #ARGV)
redis.call('HSET', META, 'created_at', created, 'updated_at', updated, 'ttl', ttl,
  'message_count', int(count))
if owner ~= '' then redis.call('HSET', META, 'owner', owner) end
hset_pairs(META, 8, first - 1)
local exp = expires_at(updated, ttl)
reindex(id, updated, exp, owner, count, bytes + metadata_bytes(META))
set_expiry(exp)
return count
"""
)

# KEYS: store keys, meta, msgs, offs. ARGV: base, id, now. Returns 1 when a
# live conversation was deleted.
DELETE = (
    _PRELUDE
    + r"""
local live = is_live(META, tonumber(ARGV[3]))
drop(META, MSGS, OFFS)
unindex(ARGV[2])
if live then return 1 end
return 0
"""
)

# KEYS: store keys, meta, msgs, offs. ARGV: base, id, now, ttl ("0" = never).
SET_TTL = (
    _PRELUDE
    + r"""
local id, now_s, ttl = ARGV[2], ARGV[3], ARGV[4]
if not is_live(META, tonumber(now_s)) then return 0 end
redis.call('HSET', META, 'ttl', ttl, 'updated_at', now_s)
local exp = expires_at(now_s, ttl)
set_expiry(exp)
local v = redis.call('HMGET', META, 'message_count', 'owner')
local _, bytes = ledger_get(id)
reindex(id, now_s, exp, v[2] or '', tonumber(v[1]) or 0, bytes or 0)
return 1
"""
)

# KEYS: meta, msgs, offs. ARGV: now, last ("" = all), include_expired ("1"/"0").
# Returns false, or {meta hash as a flat list, the wanted messages' JSON joined by ","}.
LOAD = (
    _READ
    + r"""
local flat = redis.call('HGETALL', KEYS[1])
if #flat == 0 then return false end
if ARGV[3] ~= '1' then
  local updated, ttl
  for i = 1, #flat, 2 do
    if flat[i] == 'updated_at' then
      updated = flat[i + 1]
    elseif flat[i] == 'ttl' then
      ttl = flat[i + 1]
    end
  end
  local t = tonumber(ttl) or 0
  if t > 0 and tonumber(updated) + t * 1000 <= tonumber(ARGV[1]) then return false end
end
return {flat, read_messages(KEYS[2], KEYS[3], ARGV[2])}
"""
)

# KEYS: store keys. ARGV: base, now, owner ("" = all), prefix ("" = none), limit, offset.
# Returns {total, id, meta flat list, id, meta flat list, ...}.
LIST_PAGE = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[2])
local owner, prefix = ARGV[3], ARGV[4]
local limit, offset = tonumber(ARGV[5]), tonumber(ARGV[6])
local src = K_INDEX
if owner ~= '' then src = owner_key(owner) end
local expired = expired_ids(now)
local dead = {}
for _, id in ipairs(expired) do dead[id] = true end
local page, total = {}, 0
if prefix ~= '' then
  local rows = {}
  for _, id in ipairs(redis.call('ZRANGEBYLEX', K_IDS, '[' .. prefix, '(' .. prefix .. '\255')) do
    if not dead[id] then
      local rank = redis.call('ZREVRANK', src, id)
      if rank then table.insert(rows, {rank, id}) end
    end
  end
  -- Index order (score, then id bytes); Lua's own string comparison follows the locale.
  table.sort(rows, function(a, b) return a[1] < b[1] end)
  total = #rows
  for i = offset + 1, math.min(offset + limit, #rows) do table.insert(page, rows[i][2]) end
else
  local ranks = {}
  for _, id in ipairs(expired) do
    local rank = redis.call('ZREVRANK', src, id)
    if rank then table.insert(ranks, rank) end
  end
  table.sort(ranks)
  total = redis.call('ZCARD', src) - #ranks
  -- The rank of the offset-th live id: skip the expired ranks before it.
  local s, i = offset, 1
  while true do
    while i <= #ranks and ranks[i] < s do i = i + 1 end
    local target = offset + i - 1
    if target ~= s then
      s = target
    elseif i <= #ranks and ranks[i] == s then
      s = s + 1
    else
      break
    end
  end
  if offset < total then
    for _, id in ipairs(redis.call('ZREVRANGE', src, s, s + limit + #ranks - 1)) do
      if #page >= limit then break end
      if not dead[id] then table.insert(page, id) end
    end
  end
end
local out = {total}
for _, id in ipairs(page) do
  table.insert(out, id)
  table.insert(out, redis.call('HGETALL', conv_key(id, 'meta')))
end
return out
"""
)

# KEYS: store keys. ARGV: base, now. Returns every live id, newest first.
LIST_IDS = (
    _PRELUDE
    + r"""
local dead = {}
for _, id in ipairs(expired_ids(tonumber(ARGV[2]))) do dead[id] = true end
local out = {}
for _, id in ipairs(redis.call('ZREVRANGE', K_INDEX, 0, -1)) do
  if not dead[id] then table.insert(out, id) end
end
return out
"""
)

# KEYS: store keys. ARGV: base, now, include_expired, after ("" = start), count.
# Returns {id, meta flat list, joined messages, ...} for the next `count` ids in byte order.
ITER_BATCH = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[2])
local low = '-'
if ARGV[4] ~= '' then low = '(' .. ARGV[4] end
local out = {}
for _, id in ipairs(redis.call('ZRANGEBYLEX', K_IDS, low, '+', 'LIMIT', 0, tonumber(ARGV[5]))) do
  local meta = conv_key(id, 'meta')
  local flat, joined = {}, ''
  if ARGV[3] == '1' or is_live(meta, now) then
    flat = redis.call('HGETALL', meta)
    if #flat > 0 then joined = read_messages(conv_key(id, 'msgs'), conv_key(id, 'offs'), '') end
  end
  table.insert(out, id)
  table.insert(out, flat)
  table.insert(out, joined)
end
return out
"""
)

# KEYS: store keys. ARGV: base, now. Returns {live conversations, live messages,
# expired (not yet cleaned up) conversations, live bytes}. Reads no message.
STATS = (
    _PRELUDE
    + r"""
local expired = expired_ids(tonumber(ARGV[2]))
local dead_messages, dead_bytes = 0, 0
for _, id in ipairs(expired) do
  local c, b = ledger_get(id)
  dead_messages = dead_messages + (c or 0)
  dead_bytes = dead_bytes + (b or 0)
end
local totals = redis.call('HMGET', K_TOTALS, 'messages', 'bytes')
return {
  redis.call('ZCARD', K_INDEX) - #expired,
  (tonumber(totals[1]) or 0) - dead_messages,
  #expired,
  (tonumber(totals[2]) or 0) - dead_bytes,
}
"""
)

# KEYS: store keys. ARGV: base, now, batch. Removes up to `batch` expired
# conversations (keys and index entries); returns how many.
CLEANUP = (
    _PRELUDE
    + r"""
local ids = redis.call('ZRANGEBYSCORE', K_EXPIRY, '-inf', int(tonumber(ARGV[2])), 'LIMIT', 0,
  tonumber(ARGV[3]))
for _, id in ipairs(ids) do
  drop(conv_key(id, 'meta'), conv_key(id, 'msgs'), conv_key(id, 'offs'))
  unindex(id)
end
return #ids
"""
)

# KEYS: store keys. ARGV: base, now, batch. Deletes up to `batch` conversations;
# returns {how many ids it processed, how many of them were live}. When nothing
# is left it deletes the store keys themselves.
CLEAR = (
    _PRELUDE
    + r"""
local now = tonumber(ARGV[2])
local ids = redis.call('ZRANGE', K_IDS, 0, tonumber(ARGV[3]) - 1)
local live = 0
for _, id in ipairs(ids) do
  local meta = conv_key(id, 'meta')
  if is_live(meta, now) then live = live + 1 end
  drop(meta, conv_key(id, 'msgs'), conv_key(id, 'offs'))
  unindex(id)
end
if #ids == 0 then redis.call('DEL', K_INDEX, K_EXPIRY, K_IDS, K_LEDGER, K_TOTALS) end
return {#ids, live}
"""
)

SCRIPTS: dict[str, str] = {
    "save": SAVE,
    "create": CREATE,
    "update_metadata": UPDATE_METADATA,
    "append": APPEND,
    "put": PUT,
    "delete": DELETE,
    "set_ttl": SET_TTL,
    "load": LOAD,
    "list_page": LIST_PAGE,
    "list_ids": LIST_IDS,
    "iter_batch": ITER_BATCH,
    "stats": STATS,
    "cleanup": CLEANUP,
    "clear": CLEAR,
}
