#!lua
-- set_retry(KEYS: message_ids, retry_queue; ARGV: message_id, timestamp)
-- Set the retry time of a stored message, replacing an earlier one.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  retry_queue: ZSET of ids scored by retry time, in db offset+0
-- ARGV[1]  the message id
-- ARGV[2]  the retry time in UNIX seconds, as decimal text
--
-- Returns 1 when the retry time was set, 0 when the id is not stored. A
-- retry_queue of the wrong type fails with an error reply before any
-- write.
if redis.call('SISMEMBER', KEYS[1], ARGV[1]) == 0 then
  return 0
end
local retry_type = redis.call('TYPE', KEYS[2]).ok
if retry_type ~= 'zset' and retry_type ~= 'none' then
  return redis.error_reply(
    'the Redis layout is broken: retry_queue is a ' .. retry_type .. ', not a zset, so nothing was'
    .. ' changed; slimta-storage check lists such keys')
end

redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
