#!lua flags=no-writes
-- inspect_ids(KEYS: message_ids, message_id, ...; ARGV: offset)
-- Read what is stored for each of a page of message ids, to find the
-- messages whose meta or contents are missing.
--
-- KEYS[1]   message_ids: SET of stored ids, in db offset+0
-- KEYS[2..] the message ids: their meta HASH in db offset+1 and contents
--           STRING in db offset+2
-- ARGV[1]   offset, the first of the four databases
--
-- Returns {stored, meta type, contents type, timestamp, ...}, four entries
-- per id in the order of KEYS: 1 when the id is still a member of
-- message_ids, else 0; the TYPE replies of its meta and contents keys; and
-- the value of its timestamp meta key, or nil when the meta is not a hash
-- or has no timestamp.
local offset = tonumber(ARGV[1])
local described = {}
for i = 2, #KEYS do
  redis.call('SELECT', offset)
  local stored = redis.call('SISMEMBER', KEYS[1], KEYS[i])

  redis.call('SELECT', offset + 1)
  local meta_type = redis.call('TYPE', KEYS[i]).ok
  local timestamp = false
  if meta_type == 'hash' then
    timestamp = redis.call('HGET', KEYS[i], 'timestamp')
  end

  redis.call('SELECT', offset + 2)
  local contents_type = redis.call('TYPE', KEYS[i]).ok

  described[#described + 1] = stored
  described[#described + 1] = meta_type
  described[#described + 1] = contents_type
  described[#described + 1] = timestamp
end
return described
