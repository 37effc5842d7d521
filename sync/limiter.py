"""A token bucket in Redis shared by every worker, so the fleet stays under Stripe's rate limit
(100 requests/s live, 25/s in test mode) however many workers run.

One Lua script refills and takes a token atomically; it answers how long to wait when the bucket
is empty, so a caller waits exactly that long instead of polling.
"""

from __future__ import annotations

import time

import redis

_TAKE = """
local key = KEYS[1]
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local now = tonumber(ARGV[3])
local state = redis.call('HMGET', key, 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + (now - at) * rate)
local wait = 0
if tokens >= 1 then
  tokens = tokens - 1
else
  wait = (1 - tokens) / rate
end
redis.call('HSET', key, 'tokens', tokens, 'at', now)
redis.call('EXPIRE', key, 60)
return tostring(wait)
"""


class RateLimiter:
    def __init__(
        self, client: redis.Redis, *, per_second: float, key: str = "billing:stripe:bucket"
    ) -> None:
        self.client = client
        self.rate = per_second
        # A one-second burst: smooth enough for Stripe, and no idle worker hoards tokens.
        self.burst = max(1.0, per_second)
        self.key = key
        self._script = client.register_script(_TAKE)

    def acquire(self, *, max_wait: float = 30.0) -> None:
        """Take one token, waiting as long as the bucket says (never more than max_wait)."""
        deadline = time.monotonic() + max_wait
        while True:
            now = self.client.time()
            wait = float(
                self._script(keys=[self.key], args=[self.rate, self.burst, now[0] + now[1] / 1e6])
            )
            if wait <= 0:
                return
            if time.monotonic() + wait > deadline:
                raise TimeoutError("rate limiter: no token within the allowed wait")
            time.sleep(wait)
