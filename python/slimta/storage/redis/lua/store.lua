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
-- Redis rejects the whole script before it starts when the server is
-- over maxmemory, so a full server never holds half a message.
if redis.call('SADD', KEYS[1], KEYS[3]) == 0 then
  return 0
end

if ARGV[3] ~= '' then
  redis.call('ZADD', KEYS[2], ARGV[3], KEYS[3])
end

local offset = tonumber(ARGV[1])
redis.call('SELECT', offset + 1)
-- HSET in slices of 500 pairs, because unpack() of every argument at once
-- can overflow the Lua stack for a large meta.
for first = 4, #ARGV, 1000 do
  redis.call('HSET', KEYS[3], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end

redis.call('SELECT', offset + 2)
redis.call('SET', KEYS[3], ARGV[2])
return 1
