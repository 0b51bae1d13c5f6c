#!lua
-- store(KEYS: message_ids, retry_queue, message_id; ARGV: offset, contents, retry, field, value, ...)
-- Register a new message id and write its meta, contents and retry time,
-- all in one atomic step.
--
-- KEYS[1]   message_ids: SET of stored ids, in db offset+0
-- KEYS[2]   retry_queue: ZSET of ids scored by retry time, in db offset+0
-- KEYS[3]   the new message id: its meta HASH in db offset+1 and its
--           contents STRING in db offset+2
-- ARGV[1]   offset, the first of the four databases
-- ARGV[2]   the contents, as raw bytes
-- ARGV[3]   the retry time in UNIX seconds as decimal text, or "" for none
-- ARGV[4..] the meta as field, value pairs
--
-- Returns 1 when the message was stored, 0 when the id is stored already.
-- Every check comes before the first write, so a message_ids or
-- retry_queue of the wrong type fails with an error reply and writes
-- nothing. Redis rejects the whole script before it starts when the
-- server is over maxmemory, so a full server never stores half a message.
local function check_type(key, name, expected)
  local found = redis.call('TYPE', key).ok
  if found ~= expected and found ~= 'none' then
    return redis.error_reply(
      'the Redis layout is broken: ' .. name .. ' is a ' .. found .. ', not a ' .. expected
      .. ', so nothing was stored; slimta-storage check lists such keys')
  end
end

local broken = check_type(KEYS[1], 'message_ids', 'set') or check_type(KEYS[2], 'retry_queue', 'zset')
if broken then
  return broken
end
if redis.call('SADD', KEYS[1], KEYS[3]) == 0 then
  return 0
end

if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], KEYS[3])
else
  -- A retry time that another writer left for the id must not make the
  -- new message deferred.
  redis.call('ZREM', KEYS[2], KEYS[3])
end

-- Remove what a deleted message of the same id may have left in the
-- other databases, so the message is exactly what was given.
local offset = tonumber(ARGV[1])
redis.call('SELECT', offset + 3)
redis.call('DEL', KEYS[3])
redis.call('SELECT', offset + 1)
redis.call('DEL', KEYS[3])
-- HSET in slices of 500 pairs, because unpack() of every argument at once
-- can overflow the Lua stack for a large meta.
for first = 4, #ARGV, 1000 do
  redis.call('HSET', KEYS[3], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end

redis.call('SELECT', offset + 2)
redis.call('SET', KEYS[3], ARGV[2])
return 1
