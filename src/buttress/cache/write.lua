-- Set or delete a cached value, cancel any lease on it and announce the change.
-- KEYS[1] the value key, KEYS[2] its lease key.
-- ARGV[1] "set" or "del", ARGV[2] the encoded value, ARGV[3] ttl in ms (0: none),
-- ARGV[4] the channel, ARGV[5] the invalidation message.
-- Deleting the lease makes an in-flight fill of an older value a no-op (see fill.lua).
-- Returns the number of value keys removed for "del", 1 for "set".
local result = 1
if ARGV[1] == 'set' then
  if tonumber(ARGV[3]) > 0 then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  else
    redis.call('SET', KEYS[1], ARGV[2])
  end
else
  result = redis.call('DEL', KEYS[1])
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return result
