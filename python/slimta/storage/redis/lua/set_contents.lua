#!lua
-- set_contents(KEYS: message_ids, message_id; ARGV: offset, contents)
-- Store the contents of a stored message, replacing earlier contents.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its contents STRING in db offset+2
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  the contents, as raw bytes
--
-- Returns 1 when the contents were stored, 0 when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return 0
end

redis.call('SELECT', tonumber(ARGV[1]) + 2)
redis.call('SET', KEYS[2], ARGV[2])
return 1
