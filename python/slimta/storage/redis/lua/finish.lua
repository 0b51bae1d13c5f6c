#!lua flags=allow-oom
-- finish(KEYS: message_ids, retry_queue, message_id; ARGV: offset[, owner])
-- Remove a stored message from all four databases, as delete.lua does,
-- when no owner is given or the owner holds its unexpired lock, all in
-- one atomic step.
-- It may run while Redis is over maxmemory, because deleting frees memory
-- and a full server must still be able to drain its queue.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  retry_queue: ZSET of ids scored by retry time, in db offset+0
-- KEYS[3]  the message id: its meta, contents and lock in dbs offset+1 to +3
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  the owner that must hold the lock; absent to delete whatever
--          the lock
--
-- Returns {1, 1} when the message was deleted, {1, 0} when the owner does
-- not hold an unexpired lock, or {0} when the id is not stored. Every
-- check comes before the first write, so an error leaves the message as
-- it was.
if redis.call('SISMEMBER', KEYS[1], KEYS[3]) == 0 then
  return {0}
end
local retry_type = redis.call('TYPE', KEYS[2]).ok
if retry_type ~= 'zset' and retry_type ~= 'none' then
  return redis.error_reply('retry_queue is a ' .. retry_type .. ', not a zset')
end

local offset = tonumber(ARGV[1])
if #ARGV >= 2 then
  redis.call('SELECT', offset + 3)
  if redis.call('GET', KEYS[3]) ~= ARGV[2] then
    return {1, 0}
  end
  redis.call('SELECT', offset)
end

-- The same removal as delete.lua.
redis.call('SREM', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], KEYS[3])
for db = offset + 1, offset + 3 do
  redis.call('SELECT', db)
  redis.call('DEL', KEYS[3])
end
return {1, 1}
