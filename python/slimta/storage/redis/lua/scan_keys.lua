#!lua flags=no-writes
-- scan_keys(KEYS: message_ids; ARGV: offset, database, cursor, count)
-- Scan one page of the keys of one database of the layout and describe
-- each key: its type, whether its name is a stored id and its expiry.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  which database of the layout to scan, 0 to 3
-- ARGV[3]  SCAN cursor of that database, "0" to start
-- ARGV[4]  SCAN COUNT hint
--
-- Returns {next cursor, {key, type, stored, pttl, ...}}, four entries per
-- key. type is the TYPE reply and pttl the PTTL reply, -1 for a key
-- without expiry. stored is 1 when the key is a member of message_ids and
-- 0 when it is not, or -1 when message_ids is not a set, because then
-- membership is unknown. The scan is over when the next cursor is "0".
local offset = tonumber(ARGV[1])
redis.call('SELECT', offset)
local ids_type = redis.call('TYPE', KEYS[1]).ok

redis.call('SELECT', offset + tonumber(ARGV[2]))
local page = redis.call('SCAN', ARGV[3], 'COUNT', ARGV[4])
local keys = page[2]
local types = {}
local pttls = {}
for i = 1, #keys do
  types[i] = redis.call('TYPE', keys[i]).ok
  pttls[i] = redis.call('PTTL', keys[i])
end

redis.call('SELECT', offset)
local stored = {}
for first = 1, #keys, 1000 do
  local last = math.min(first + 999, #keys)
  local found = nil
  if ids_type == 'set' or ids_type == 'none' then
    found = redis.call('SMISMEMBER', KEYS[1], unpack(keys, first, last))
  end
  for i = first, last do
    stored[i] = found and found[i - first + 1] or -1
  end
end

local described = {}
for i = 1, #keys do
  described[#described + 1] = keys[i]
  described[#described + 1] = types[i]
  described[#described + 1] = stored[i]
  described[#described + 1] = pttls[i]
end
return {page[1], described}
