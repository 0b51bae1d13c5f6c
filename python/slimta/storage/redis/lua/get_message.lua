#!lua flags=no-writes
-- get_message(KEYS: message_ids, message_id; ARGV: offset)
-- Read the whole meta and the contents of a stored message in one atomic
-- step.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its meta HASH in db offset+1 and its contents
--          STRING in db offset+2
-- ARGV[1]  offset, the first of the four databases
--
-- Returns {1, {field, value, ...}, contents}, with nil contents when none
-- were written, or {0} when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return {0}
end

local offset = tonumber(ARGV[1])
redis.call('SELECT', offset + 1)
local meta = redis.call('HGETALL', KEYS[2])
redis.call('SELECT', offset + 2)
return {1, meta, redis.call('GET', KEYS[2])}
