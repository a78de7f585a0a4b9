-- One GCRA step, atomically, on the Redis server's clock (buttress.ratelimit._gcra in Lua).
--
-- KEYS[1]  the bucket: its value is the theoretical arrival time (TAT) in whole
--          microseconds of Redis TIME; it expires when the bucket is full again
-- ARGV[1]  interval: microseconds per unit (may be fractional)
-- ARGV[2]  burst: units allowed at once when the bucket is full
-- ARGV[3]  cost: units this request takes
-- ARGV[4]  max_wait: microseconds the caller accepts to wait for a reserved slot
--
-- Returns {allowed (1/0), remaining, retry_after_us, reset_after_us, wait_us}.
-- Times are rounded up to whole microseconds: the caller never waits too little.

if redis.replicate_commands then
  redis.replicate_commands() -- Redis 5/6: replicate the effect (TIME is not deterministic)
end

local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local max_wait = tonumber(ARGV[4])

local tat = tonumber(redis.call('GET', KEYS[1]))
local base = now
if tat ~= nil and tat > now then
  base = tat
end
local behind = base - now -- exactly 0 for an idle bucket
local excess = behind + (cost - burst) * interval

if excess <= max_wait + 0.001 then
  local ahead = behind + cost * interval
  local wait = 0
  if excess > 0 then
    wait = excess
  end
  redis.call('SET', KEYS[1], string.format('%.0f', math.ceil(base + cost * interval)),
             'PX', math.ceil(ahead / 1000) + 1)
  local remaining = math.floor(burst - ahead / interval + 1e-9)
  if remaining < 0 then
    remaining = 0
  end
  return {1, remaining, 0, math.ceil(ahead), math.ceil(wait)}
end

local remaining = math.floor(burst - behind / interval + 1e-9)
if remaining < 0 then
  remaining = 0
end
return {0, remaining, math.ceil(excess), math.ceil(behind), 0}
