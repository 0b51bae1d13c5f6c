#!lua flags=no-writes
-- deferred_page(KEYS: message_ids, retry_queue; ARGV: until, count, after_score, after_member)
-- Read one page of retry_queue in the order of get_deferred_messages,
-- by retry time and then by the bytes of the id, starting after a cursor,
-- and keep the ids that are stored.
--
-- KEYS[1]  message_ids: SET of stored ids, in db offset+0
-- KEYS[2]  retry_queue: ZSET of ids scored by retry time, in db offset+0
-- ARGV[1]  the latest retry time to include, as decimal text, or "" for
--          every retry time
-- ARGV[2]  how many members of retry_queue the page reads at most
-- ARGV[3]  the retry time of the cursor as decimal text, or "" for the
--          first page
-- ARGV[4]  the member of the cursor, or "" for the first page
--
-- Returns {{message id, ...}, score, member}: the stored ids among the
-- members read, then the score and the member of the last member read,
-- which the next page starts after. Score and member are nil when no
-- member in range follows. Members that are not stored are left out of
-- the ids but still move the cursor on.
local latest = nil
if ARGV[1] ~= '' then
  latest = tonumber(ARGV[1])
end
local count = tonumber(ARGV[2])

-- Tell whether string a sorts after string b by their bytes, as a sorted
-- set orders the members of one score. Lua's own < on strings uses the
-- server's collation locale, which may not be bytewise.
local function after(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then
      return x > y
    end
  end
  return #a > #b
end

-- Return the rank of the first member after (score, member) in the order
-- of the sorted set, whether or not that member is still in it.
local function rank_after(score_text, member)
  local current = redis.call('ZSCORE', KEYS[2], member)
  if current and tonumber(current) == tonumber(score_text) then
    return redis.call('ZRANK', KEYS[2], member) + 1
  end

  -- The member was removed or moved since the page before. The members
  -- of that score hold the ranks low to high - 1 in the order of their
  -- bytes, so a binary search finds the first one after the member in
  -- O(log n) reads of one rank each.
  local low = redis.call('ZCOUNT', KEYS[2], '-inf', '(' .. score_text)
  local high = redis.call('ZCOUNT', KEYS[2], '-inf', score_text)
  while low < high do
    local middle = math.floor((low + high) / 2)
    local probe = redis.call('ZRANGE', KEYS[2], middle, middle)[1]
    if after(probe, member) then
      high = middle
    else
      low = middle + 1
    end
  end
  return low
end

local start = 0
if ARGV[3] ~= '' then
  start = rank_after(ARGV[3], ARGV[4])
end

-- Reading one member more than the page needs tells whether another page
-- follows.
local entries = redis.call('ZRANGE', KEYS[2], start, start + count, 'WITHSCORES')
local members = {}
local last_score = false
local more = false
for i = 1, #entries, 2 do
  if latest and tonumber(entries[i + 1]) > latest then
    break
  end
  if #members == count then
    more = true
    break
  end
  members[#members + 1] = entries[i]
  last_score = entries[i + 1]
end

-- SMISMEMBER in slices of 1000, because unpack() of a whole page can
-- overflow the Lua stack.
local stored = {}
for first = 1, #members, 1000 do
  local last = math.min(first + 999, #members)
  local found = redis.call('SMISMEMBER', KEYS[1], unpack(members, first, last))
  for i = first, last do
    if found[i - first + 1] == 1 then
      stored[#stored + 1] = members[i]
    end
  end
end

if not more then
  return {stored, false, false}
end
return {stored, last_score, members[#members]}
