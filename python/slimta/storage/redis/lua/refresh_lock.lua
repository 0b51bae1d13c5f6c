#!lua flags=allow-oom
-- refresh_lock(KEYS: message_ids, message_id; ARGV: offset, length_ms, owner)
-- Set a new expiry on a lock while its owner holds it.
-- It may run while Redis is over maxmemory: it changes an expiry only,
-- and a relayer must be able to keep its lock while a full queue drains.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its lock STRING in db offset+3
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  new lock length in milliseconds, from now
-- ARGV[3]  the owner that must hold the lock
--
-- Returns {1, 1} when the lock was extended, {1, 0} when there is no lock
-- or another owner holds it, or {0} when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return {0}
end

redis.call('SELECT', tonumber(ARGV[1]) + 3)
if redis.call('GET', KEYS[2]) ~= ARGV[3] then
  return {1, 0}
end
redis.call('PEXPIRE', KEYS[2], ARGV[2])
return {1, 1}
