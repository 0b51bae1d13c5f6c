#!lua flags=no-writes
-- describe(KEYS: message_ids, retry_queue, message_id; ARGV: offset)
-- Read the contents size, retry time and lock expiry of a stored message.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  retry_queue: ZSET of ids scored by retry time, in db offset+0
-- KEYS[3]  the message id: its contents and lock in dbs offset+2 and +3
-- ARGV[1]  offset, the first of the four databases
--
-- Returns {1, has contents, size, retry time or nil, lock PTTL}, where a
-- PTTL below 0 means no lock, or {0} when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[3]) == 0 then
  return {0}
end

local offset = tonumber(ARGV[1])
local retry = redis.call('ZSCORE', KEYS[2], KEYS[3])
redis.call('SELECT', offset + 2)
local has_contents = redis.call('EXISTS', KEYS[3])
local size = redis.call('STRLEN', KEYS[3])
redis.call('SELECT', offset + 3)
return {1, has_contents, size, retry, redis.call('PTTL', KEYS[3])}
