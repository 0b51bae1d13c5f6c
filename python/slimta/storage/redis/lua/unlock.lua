#!lua flags=allow-oom
-- unlock(KEYS: message_id; ARGV: offset[, owner])
-- Remove the lock of a message, whether or not the id is stored.
-- It may run while Redis is over maxmemory, because unlocking frees memory
-- and a full server must still be able to drain its queue.
--
-- KEYS[1]  the message id: its lock STRING in db offset+3
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  the owner whose lock may be removed; absent to remove any lock
--
-- Returns 1 when a lock was removed, 0 when there was none or another
-- owner holds it.
redis.call('SELECT', tonumber(ARGV[1]) + 3)
if #ARGV >= 2 and redis.call('GET', KEYS[1]) ~= ARGV[2] then
  return 0
end
return redis.call('DEL', KEYS[1])
