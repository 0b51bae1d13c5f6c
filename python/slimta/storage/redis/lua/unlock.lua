#!lua flags=allow-oom
-- unlock(KEYS: message_ids, message_id; ARGV: offset[, owner])
-- Remove the lock of a stored message.
-- It may run while Redis is over maxmemory, because unlocking frees memory
-- and a full server must still be able to drain its queue.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its lock STRING in db offset+3
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  the owner whose lock may be removed; absent to remove any lock
--
-- Returns 1 when a lock was removed, 0 when there was none, another owner
-- holds it, or the id is not stored. A lock key left for an id that is not
-- stored stays for `slimta-storage check --repair` to remove.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return 0
end

redis.call('SELECT', tonumber(ARGV[1]) + 3)
if #ARGV >= 2 and redis.call('GET', KEYS[2]) ~= ARGV[2] then
  return 0
end
return redis.call('DEL', KEYS[2])
