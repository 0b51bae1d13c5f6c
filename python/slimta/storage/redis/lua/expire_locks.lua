#!lua flags=allow-oom
-- expire_locks(KEYS: message_id, ...; ARGV: offset, length_ms)
-- Set an expiry on lock keys that have none, so that a lock whose holder
-- stopped cannot keep its message from delivery for ever. A lock that
-- has an expiry now is left as it is.
-- It may run while Redis is over maxmemory: it changes expiries only.
--
-- KEYS[1..] the message ids: their lock STRING in db offset+3
-- ARGV[1]   offset, the first of the four databases
-- ARGV[2]   the expiry to set, in milliseconds from now
--
-- Returns {set, ...}, one entry per id in the order of KEYS: 1 when the
-- expiry was set, 0 when the key is gone, has an expiry or is not a
-- string.
redis.call('SELECT', tonumber(ARGV[1]) + 3)
local set = {}
for i = 1, #KEYS do
  set[i] = 0
  if redis.call('TYPE', KEYS[i]).ok == 'string' and redis.call('PTTL', KEYS[i]) == -1 then
    set[i] = redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return set
