--! include lib/bucket.lua
-- One page of live conversations, newest first. ARGV[3] owner ('' = everyone),
-- ARGV[4] id prefix ('' = any), ARGV[5] rows to skip, ARGV[6] rows to return,
-- ARGV[7] '1' to add each row's meta hash, ARGV[8] (optional, '' = none) the lowest
-- updated_at to return: rows below it end the page early.
-- Reply: {total, id, updated_at, [meta,] id, updated_at, [meta,] ...}.
local src = RECENT
if ARGV[3] ~= '' then src = PREFIX .. 'owner:' .. ARGV[3] end
local prefix, skip, count = ARGV[4], tonumber(ARGV[5]), tonumber(ARGV[6])
local floor = tonumber(ARGV[8] or '')
local expired = expired_ids()
local dead = set_of(expired)
local rows, total = {}, 0
if prefix ~= '' then
  local found = {}
  for _, id in ipairs(redis.call('ZRANGEBYLEX', NAMES, '[' .. prefix, '(' .. prefix .. '\255')) do
    if not dead[id] then
      local rank = redis.call('ZREVRANK', src, id)
      if rank then found[#found + 1] = {rank, id} end
    end
  end
  -- Index order (score, then id bytes); Lua's own string comparison follows the locale.
  table.sort(found, function(a, b) return a[1] < b[1] end)
  total = #found
  for i = skip + 1, math.min(skip + count, #found) do
    local id = found[i][2]
    local score = redis.call('ZSCORE', src, id)
    if floor and tonumber(score) < floor then break end
    rows[#rows + 1] = id
    rows[#rows + 1] = score
  end
else
  local ranks = {}
  for _, id in ipairs(expired) do
    local rank = redis.call('ZREVRANK', src, id)
    if rank then ranks[#ranks + 1] = rank end
  end
  table.sort(ranks)
  total = redis.call('ZCARD', src) - #ranks
  -- The rank of the skip-th live id: step over the expired ranks before it.
  local s, i = skip, 1
  while true do
    while i <= #ranks and ranks[i] < s do i = i + 1 end
    local target = skip + i - 1
    if target ~= s then
      s = target
    elseif i <= #ranks and ranks[i] == s then
      s = s + 1
    else
      break
    end
  end
  if skip < total then
    local range = redis.call('ZREVRANGE', src, s, s + count + #ranks - 1, 'WITHSCORES')
    for j = 1, #range, 2 do
      if #rows >= 2 * count then break end
      if floor and tonumber(range[j + 1]) < floor then break end
      if not dead[range[j]] then
        rows[#rows + 1] = range[j]
        rows[#rows + 1] = range[j + 1]
      end
    end
  end
end
local out = {total}
for j = 1, #rows, 2 do
  out[#out + 1] = rows[j]
  out[#out + 1] = rows[j + 1]
  if ARGV[7] == '1' then out[#out + 1] = redis.call('HGETALL', key('m', rows[j])) end
end
return out
