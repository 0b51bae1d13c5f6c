#!lua flags=allow-oom
-- remove_orphans(KEYS: message_ids, retry_queue, message_id, ...; ARGV: offset, kind)
-- Remove keys of one kind whose id is not in message_ids. Each id is
-- checked again in this atomic step, so a key whose id a writer has
-- stored since the check is kept. Keys of another type than the layout's
-- are kept too.
-- It may run while Redis is over maxmemory, because deleting frees memory.
--
-- KEYS[1]   message_ids: SET of stored ids, in db offset+0
-- KEYS[2]   retry_queue: ZSET of ids scored by retry time, in db offset+0
-- KEYS[3..] the ids whose key of that kind the check found without the id
--           in message_ids
-- ARGV[1]   offset, the first of the four databases
-- ARGV[2]   the kind of key: "meta" (HASH in db offset+1), "contents"
--           (STRING in db offset+2), "lock" (STRING in db offset+3) or
--           "retry" (the id's member of retry_queue)
--
-- Returns {removed, ...}, one entry per id in the order of KEYS: 1 when
-- the key was removed, 0 when it was kept because the id is stored now,
-- message_ids is not a set, or the key is gone or has another type.
local offset = tonumber(ARGV[1])
local kind = ARGV[2]
local places = {meta = {1, 'hash'}, contents = {2, 'string'}, lock = {3, 'string'}}

local removed = {}
for i = 3, #KEYS do
  removed[i - 2] = 0
end
local ids_type = redis.call('TYPE', KEYS[1]).ok
if ids_type ~= 'set' and ids_type ~= 'none' then
  return removed
end

if kind == 'retry' then
  if redis.call('TYPE', KEYS[2]).ok ~= 'zset' then
    return removed
  end
  for i = 3, #KEYS do
    if redis.call('SISMEMBER', KEYS[1], KEYS[i]) == 0 then
      removed[i - 2] = redis.call('ZREM', KEYS[2], KEYS[i])
    end
  end
  return removed
end

local place = places[kind]
if not place then
  return redis.error_reply('unknown kind of key: ' .. tostring(kind))
end
for i = 3, #KEYS do
  if redis.call('SISMEMBER', KEYS[1], KEYS[i]) == 0 then
    redis.call('SELECT', offset + place[1])
    if redis.call('TYPE', KEYS[i]).ok == place[2] then
      removed[i - 2] = redis.call('DEL', KEYS[i])
    end
    redis.call('SELECT', offset)
  end
end
return removed
