--! include lib/bucket.lua
-- Removes the expired conversations among up to ARGV[3] candidates of the expiry index.
-- Reply: {how many were removed, how many candidates were looked at, 0}.
local dead, scanned = expired_ids(tonumber(ARGV[3]))
local messages, bytes = 0, 0
for _, id in ipairs(dead) do
  local v = erase(id)
  messages = messages + (tonumber(v[4]) or 0)
  bytes = bytes + (tonumber(v[5]) or 0) + (tonumber(v[6]) or 0)
end
add_totals(-messages, -bytes)
return {#dead, scanned, 0}
