#!lua
-- set_meta_key(KEYS: message_ids, message_id; ARGV: offset, field[, value])
-- Set or remove one meta key of a stored message.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its meta HASH in db offset+1
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  the meta key
-- ARGV[3]  the new value; absent to remove the key
--
-- Returns 1 when the meta was changed, 0 when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return 0
end

redis.call('SELECT', tonumber(ARGV[1]) + 1)
if #ARGV >= 3 then
  redis.call('HSET', KEYS[2], ARGV[2], ARGV[3])
else
  redis.call('HDEL', KEYS[2], ARGV[2])
end
return 1
