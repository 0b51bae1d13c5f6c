#!lua flags=no-writes
-- check_offset(ARGV: offset)
-- Check that the four databases of the layout exist on the server.
--
-- ARGV[1]  offset, the first of the four databases
--
-- Returns 1, or fails with the server's error for the first database that
-- cannot be selected.
local offset = tonumber(ARGV[1])
for db = offset, offset + 3 do
  redis.call('SELECT', db)
end
return 1
