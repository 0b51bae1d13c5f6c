#!lua
-- set_meta(KEYS: message_ids, message_id; ARGV: offset, field, value, ...)
-- Replace the whole meta of a stored message.
--
-- KEYS[1]   message_ids: SET of stored ids, in db offset+0
-- KEYS[2]   the message id: its meta HASH in db offset+1
-- ARGV[1]   offset, the first of the four databases
-- ARGV[2..] the new meta as field, value pairs; none removes all meta
--
-- Returns 1 when the meta was replaced, 0 when the id is not stored.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return 0
end

redis.call('SELECT', tonumber(ARGV[1]) + 1)
redis.call('DEL', KEYS[2])

-- HSET in slices of 500 pairs, because unpack() of every argument at once
-- can overflow the Lua stack for a large meta.
for first = 2, #ARGV, 1000 do
  redis.call('HSET', KEYS[2], unpack(ARGV, first, math.min(first + 999, #ARGV)))
end
return 1
