#!lua flags=allow-oom
-- checkout(KEYS: message_ids, message_id; ARGV: offset, length_ms, value)
-- Take the lock of a stored message unless an unexpired lock exists, and
-- read its meta and contents, in one atomic step.
-- It may run while Redis is over maxmemory, as lock.lua does: a lock key
-- is small, and relayers must be able to check out messages to deliver
-- them and drain a full queue.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its meta HASH in db offset+1, its contents
--          STRING in db offset+2 and its lock STRING in db offset+3
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  lock length in milliseconds
-- ARGV[3]  the value stored in the lock key
--
-- Returns {1, 1, {field, value, ...}, contents} when the lock was taken,
-- with nil contents when none were written; {1, 0} while another lock is
-- unexpired; or {0} when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return {0}
end

local offset = tonumber(ARGV[1])
redis.call('SELECT', offset + 3)
if redis.call('EXISTS', KEYS[2]) == 1 then
  return {1, 0}
end

-- Read before the lock is written, so that a meta or contents key of
-- another type fails the script before it has changed anything. EXISTS
-- skips an expired lock, and nothing else runs until the script ends, so
-- the lock is still free when it is taken below.
redis.call('SELECT', offset + 1)
local meta = redis.call('HGETALL', KEYS[2])
redis.call('SELECT', offset + 2)
local contents = redis.call('GET', KEYS[2])

redis.call('SELECT', offset + 3)
redis.call('SET', KEYS[2], ARGV[3], 'PX', ARGV[2])
return {1, 1, meta, contents}
