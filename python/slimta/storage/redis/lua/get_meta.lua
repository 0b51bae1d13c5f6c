#!lua flags=no-writes
-- get_meta(KEYS: message_ids, message_id; ARGV: offset)
-- Read the whole meta of a stored message.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its meta HASH in db offset+1
-- ARGV[1]  offset, the first of the four databases
--
-- Returns {1, {field, value, ...}}, or {0} when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return {0}
end

redis.call('SELECT', tonumber(ARGV[1]) + 1)
return {1, redis.call('HGETALL', KEYS[2])}
