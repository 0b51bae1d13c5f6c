#!lua
-- defer(KEYS: message_ids, retry_queue, message_id; ARGV: offset, timestamp[, owner])
-- Count a failed delivery attempt of a stored message, set its retry time
-- and remove its lock, all in one atomic step. Without an owner it always
-- does so, and with one only while that owner has an unexpired lock.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  retry_queue: ZSET of ids scored by retry time, in db offset+0
-- KEYS[3]  the message id: its meta HASH in db offset+1 and its lock
--          STRING in db offset+3
-- ARGV[1]  offset, the first of the four databases
-- ARGV[2]  the retry time in UNIX seconds, as decimal text
-- ARGV[3]  the owner that must hold the lock; absent to defer whatever the
--          lock
--
-- Returns {1, 1, attempts} with the new value of the attempts meta key as
-- decimal text, {1, 0} when the owner does not hold an unexpired lock, or
-- {0} when the id is not stored. Every check and read comes before the
-- first write, so an error leaves the message as it was. Redis rejects
-- the whole script before it starts when the server is over maxmemory.

-- Return decimal text plus one, exact for any number of digits and
-- without leading zeros; Lua's numbers are doubles, exact only to 2^53.
local function add_one(decimal)
  local digits = (string.gsub(decimal, '^0+', ''))
  local head, nines = string.match(digits, '^(.-)(9*)$')
  local zeros = string.rep('0', #nines)
  if head == '' then
    return '1' .. zeros
  end
  local last = string.byte(head, #head) - string.byte('0') + 1
  return string.sub(head, 1, -2) .. last .. zeros
end

if redis.call('SISMEMBER', KEYS[1], KEYS[3]) == 0 then
  return {0}
end
local retry_type = redis.call('TYPE', KEYS[2]).ok
if retry_type ~= 'zset' and retry_type ~= 'none' then
  return redis.error_reply('retry_queue is a ' .. retry_type .. ', not a zset')
end

local offset = tonumber(ARGV[1])
if #ARGV >= 3 then
  redis.call('SELECT', offset + 3)
  if redis.call('GET', KEYS[3]) ~= ARGV[3] then
    return {1, 0}
  end
end

-- A missing value, or one that is not ASCII digits only, counts as 0.
redis.call('SELECT', offset + 1)
local stored = redis.call('HGET', KEYS[3], 'attempts')
local attempts = '1'
if stored and string.find(stored, '^[0-9]+$') then
  attempts = add_one(stored)
end

redis.call('HSET', KEYS[3], 'attempts', attempts)
redis.call('SELECT', offset)
redis.call('ZADD', KEYS[2], ARGV[2], KEYS[3])
redis.call('SELECT', offset + 3)
redis.call('DEL', KEYS[3])
return {1, 1, attempts}
