#!lua flags=no-writes
-- get_contents(KEYS: message_ids, message_id; ARGV: offset)
-- Read the contents of a stored message.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its contents STRING in db offset+2
-- ARGV[1]  offset, the first of the four databases
--
-- Returns {1, contents}, with nil contents when none were written, or {0}
-- when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return {0}
end

redis.call('SELECT', tonumber(ARGV[1]) + 2)
return {1, redis.call('GET', KEYS[2])}
