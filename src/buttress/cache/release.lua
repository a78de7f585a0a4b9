-- Give a lease back without a value (the loader failed) and wake the waiters, so one of
-- them can take the lease at once instead of waiting for it to expire.
-- KEYS[1] the lease key. ARGV[1] the token, ARGV[2] the channel, ARGV[3] the message.
-- Returns 1 if the lease was ours and is released, 0 otherwise.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  redis.call('PUBLISH', ARGV[2], ARGV[3])
  return 1
end
return 0
