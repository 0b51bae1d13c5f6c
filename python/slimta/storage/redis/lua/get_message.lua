#!lua flags=no-writes
-- get_message(KEYS: message_ids, message_id; ARGV: offset)
-- Read the whole meta and the contents of a stored message in one atomic
-- step.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  the message id: its meta HASH in db offset+1 and its contents
--          STRING in db offset+2
-- ARGV[1]  offset, the first of the four databases
--
-- Returns {1, {field, value, ...}, contents}, with nil contents when none
-- were written, {0} when the id is not stored, or {2, part, type} when
-- the message is malformed: its "meta" or "contents" key has the Redis
-- type named, as another writer may leave it, and cannot be read.
if redis.call('SISMEMBER', KEYS[1], KEYS[2]) == 0 then
  return {0}
end

local offset = tonumber(ARGV[1])
redis.call('SELECT', offset + 1)
local meta_type = redis.call('TYPE', KEYS[2]).ok
if meta_type ~= 'hash' and meta_type ~= 'none' then
  return {2, 'meta', meta_type}
end
local meta = redis.call('HGETALL', KEYS[2])

redis.call('SELECT', offset + 2)
local contents_type = redis.call('TYPE', KEYS[2]).ok
if contents_type ~= 'string' and contents_type ~= 'none' then
  return {2, 'contents', contents_type}
end
return {1, meta, redis.call('GET', KEYS[2])}
