#!lua flags=allow-oom
-- delete(KEYS: message_ids, retry_queue, message_id; ARGV: offset)
-- Remove a message from all four databases in one atomic step.
-- It may run while Redis is over maxmemory, because deleting frees memory
-- and a full server must still be able to drain its queue.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  retry_queue: ZSET of ids scored by retry time, in db offset+0
-- KEYS[3]  the message id: its meta, contents and lock in dbs offset+1 to +3
-- ARGV[1]  offset, the first of the four databases
--
-- Returns 1 when the id was stored, 0 when it was not. Keys left by other
-- writers for an id that is not stored are removed all the same. A
-- message_ids or retry_queue of the wrong type fails with an error reply
-- before any write, so the message is never left half deleted.
local function check_type(key, name, expected)
  local found = redis.call('TYPE', key).ok
  if found ~= expected and found ~= 'none' then
    return redis.error_reply(
      'the Redis layout is broken: ' .. name .. ' is a ' .. found .. ', not a ' .. expected
      .. ', so nothing was deleted; slimta-storage check lists such keys')
  end
end

local broken = check_type(KEYS[1], 'message_ids', 'set') or check_type(KEYS[2], 'retry_queue', 'zset')
if broken then
  return broken
end

local offset = tonumber(ARGV[1])
local stored = redis.call('SREM', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], KEYS[3])
for db = offset + 1, offset + 3 do
  redis.call('SELECT', db)
  redis.call('DEL', KEYS[3])
end
return stored
