-- Read a cached value, or take the lease to load it: one round trip, atomic.
-- KEYS[1] the value key, KEYS[2] its lease key (same hash slot: they share a hash tag).
-- ARGV[1] this loader's token, ARGV[2] the lease's life in milliseconds.
-- Returns {1, value} on a hit, {2, ""} when the caller now holds the lease and must load,
-- {3, pttl} when another loader holds it (pttl: milliseconds it has left).
local value = redis.call('GET', KEYS[1])
if value then
  return {1, value}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2, ''}
end
return {3, redis.call('PTTL', KEYS[2])}
