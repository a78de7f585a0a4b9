-- Store what a lease holder loaded, release its lease and wake the waiters.
-- KEYS[1] the value key, KEYS[2] its lease key.
-- ARGV[1] the token, ARGV[2] the encoded value, ARGV[3] ttl in ms (0: none),
-- ARGV[4] the channel, ARGV[5] the message announcing the fill.
-- The value is written only while the lease is still ours: a set or delete in between
-- removed the lease (write.lua), so what we loaded may predate that write, and writing
-- it would bring a stale value back (the "stale set" that memcache leases prevent).
-- Returns 1 when the value was stored, 0 when the lease was gone.
if redis.call('GET', KEYS[2]) ~= ARGV[1] then
  return 0
end
if tonumber(ARGV[3]) > 0 then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
else
  redis.call('SET', KEYS[1], ARGV[2])
end
redis.call('DEL', KEYS[2])
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
