#!lua flags=allow-oom
-- lock(KEYS: message_ids, message_id; ARGV: offset, length_ms, value)
-- Take the lock of a stored message unless an unexpired lock exists.
-- It may run while Redis is over maxmemory: a lock key is small, and
-- relayers must be able to lock messages to deliver them and drain a
-- full queue.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its lock STRING in db offset+3
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  lock length in milliseconds
-- ARGV[3]  the value stored in the lock key
--
-- Returns {1, 1} when the lock was taken, {1, 0} while another lock is
-- unexpired, or {0} when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return {0}
end

redis.call('SELECT', tonumber(ARGV[1]) + 3)
if redis.call('SET', KEYS[2], ARGV[3], 'NX', 'PX', ARGV[2]) then
  return {1, 1}
end
return {1, 0}
