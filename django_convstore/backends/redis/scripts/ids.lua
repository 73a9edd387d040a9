--! include lib/bucket.lua
-- Every live conversation, newest first. Reply: {id, updated_at, id, updated_at, ...}.
local dead = set_of(expired_ids())
local out = {}
local rows = redis.call('ZREVRANGE', RECENT, 0, -1, 'WITHSCORES')
for i = 1, #rows, 2 do
  if not dead[rows[i]] then
    out[#out + 1] = rows[i]
    out[#out + 1] = rows[i + 1]
  end
end
return out
