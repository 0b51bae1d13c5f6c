#!lua flags=no-writes
-- active_page(KEYS: message_ids; ARGV: offset, cursor, count)
-- Scan one page of lock keys and keep those of stored messages.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  SCAN cursor of db offset+3, "0" to start
-- ARGV[3]  SCAN COUNT hint
--
-- Returns {next cursor, {message id, ...}}; the scan is over when the next
-- cursor is "0". SCAN skips expired keys, so every id has an unexpired lock.
local offset = tonumber(ARGV[1])
redis.call('SELECT', offset + 3)
local page = redis.call('SCAN', ARGV[2], 'COUNT', ARGV[3])
local keys = page[2]

redis.call('SELECT', offset)
local active = {}
for first = 1, #keys, 1000 do
  local last = math.min(first + 999, #keys)
  local stored = redis.call('SMISMEMBER', KEYS[1], unpack(keys, first, last))
  for i = first, last do
    if stored[i - first + 1] == 1 then
      active[#active + 1] = keys[i]
    end
  end
end
return {page[1], active}
