#!lua flags=allow-oom
-- delete_incomplete(KEYS: message_ids, retry_queue, message_id; ARGV: offset, has_timestamp, timestamp)
-- Delete a stored message whose meta or contents are missing, as delete
-- does, but only while it is still as the check found it. It must still
-- be stored and miss its meta or contents, its timestamp meta key must be
-- the one the check judged, and each of its keys must have the layout's
-- type. So a message that a writer completed after the check is kept.
-- It may run while Redis is over maxmemory, because deleting frees memory.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  retry_queue: ZSET of ids scored by retry time, in db offset+0
-- KEYS[3]  the message id: its meta, contents and lock in dbs offset+1 to +3
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  "1" when the check found a timestamp meta key, "0" when not
-- ARGV[3]  the value of that timestamp meta key, "" when there was none
--
-- Returns 1 when the message was deleted, 0 when it was left as it is.
local offset = tonumber(ARGV[1])
if redis.call('TYPE', KEYS[1]).ok ~= 'set' or redis.call('SISMEMBER', KEYS[1], KEYS[3]) == 0 then
  return 0
end
local retry_type = redis.call('TYPE', KEYS[2]).ok
if retry_type ~= 'zset' and retry_type ~= 'none' then
  return 0
end

redis.call('SELECT', offset + 1)
local meta_type = redis.call('TYPE', KEYS[3]).ok
if meta_type ~= 'hash' and meta_type ~= 'none' then
  return 0
end
local timestamp = false
if meta_type == 'hash' then
  timestamp = redis.call('HGET', KEYS[3], 'timestamp')
end
if ARGV[2] == '1' and timestamp ~= ARGV[3] then
  return 0
end
if ARGV[2] == '0' and timestamp then
  return 0
end

redis.call('SELECT', offset + 2)
local contents_type = redis.call('TYPE', KEYS[3]).ok
if contents_type ~= 'string' and contents_type ~= 'none' then
  return 0
end
if meta_type ~= 'none' and contents_type ~= 'none' then
  return 0
end

redis.call('SELECT', offset + 3)
local lock_type = redis.call('TYPE', KEYS[3]).ok
if lock_type ~= 'string' and lock_type ~= 'none' then
  return 0
end

-- The same removal as delete.lua.
redis.call('SELECT', offset)
redis.call('SREM', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], KEYS[3])
for db = offset + 1, offset + 3 do
  redis.call('SELECT', db)
  redis.call('DEL', KEYS[3])
end
return 1
