#!lua flags=allow-oom
-- unlock(KEYS: message_id; ARGV: offset)
-- Remove the lock of a message, whether or not the id is stored.
-- It may run while Redis is over maxmemory, because unlocking frees memory
-- and a full server must still be able to drain its queue.
--
-- KEYS[1]  the message id: its lock STRING in db offset+3
-- ARGV[1]  offset, the first of the four databases
--
-- Returns 1 when a lock was removed, 0 when there was none.
redis.call('SELECT', tonumber(ARGV[1]) + 3)
return redis.call('DEL', KEYS[1])
