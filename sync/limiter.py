"""A token bucket in Redis shared by every worker, so the fleet stays under Stripe's request
rate (100/s in live mode, 25/s in test mode) however many workers and processes run.

One Lua script refills the bucket from Redis's own clock and reserves a token atomically, so
workers on machines with skewed clocks still share one budget. An empty bucket goes into debt:
the caller is told how long until its token matures and sleeps exactly that long, so callers are
served in arrival order with one round trip each and no polling. This paces the calls of an
attempt that is running; it never postpones a failed one (that is next_attempt_at).
"""

from __future__ import annotations

import time

import redis

from sync.errors import RateLimiterTimeout

_RESERVE = """
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local max_wait = tonumber(ARGV[3])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now
tokens = math.min(burst, tokens + math.max(0, now - at) * rate)
local wait = 0
if tokens < 1 then wait = (1 - tokens) / rate end
if wait > max_wait then return '-1' end
redis.call('HSET', KEYS[1], 'tokens', tokens - 1, 'at', now)
redis.call('EXPIRE', KEYS[1], 60 + math.ceil(max_wait))
return tostring(wait)
"""


class RateLimiter:
    def __init__(self, client: redis.Redis, *, per_second: float, key: str) -> None:
        self.client = client
        self.rate = per_second
        # A burst of one second's worth: no idle worker hoards tokens for a later stampede.
        self.burst = max(1.0, per_second)
        self.key = key
        self._reserve = client.register_script(_RESERVE)

    def acquire(self, *, max_wait: float = 30.0) -> float:
        """Reserve one token and sleep until it matures; returns the seconds waited. Raises
        RateLimiterTimeout (a retry, not a failure) when the queue for tokens is longer than
        max_wait, without reserving anything."""
        wait = float(self._reserve(keys=[self.key], args=[self.rate, self.burst, max_wait]))
        if wait < 0:
            raise RateLimiterTimeout(f"no Stripe rate-limit token within {max_wait:.0f}s")
        if wait > 0:
            time.sleep(wait)
        return wait
