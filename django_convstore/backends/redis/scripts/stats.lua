--! include lib/bucket.lua
-- Reply: {live conversations, their messages, expired conversations (awaiting cleanup),
-- live bytes}. Reads no message: the totals, less what the expired ones held.
local expired = expired_ids()
local messages, bytes = 0, 0
for _, id in ipairs(expired) do
  local v = redis.call('HMGET', key('m', id), 'message_count', 'size', 'msize')
  messages = messages + (tonumber(v[1]) or 0)
  bytes = bytes + (tonumber(v[2]) or 0) + (tonumber(v[3]) or 0)
end
local total_messages, total_bytes = totals()
return {
  redis.call('ZCARD', RECENT) - #expired,
  total_messages - messages,
  #expired,
  total_bytes - bytes,
}
