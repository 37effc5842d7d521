"""One schedule of Stripe calls in Redis shared by every worker, so the fleet stays just under
Stripe's request rate (100/s in live mode, 25/s in test mode) however many workers and
processes run.

It is GCRA (the generic cell rate algorithm, a token bucket of one token): one Lua script reads
Redis's own clock and hands out the next free slot, one `interval` after the previous one, so
workers on machines with skewed clocks still share one schedule. A caller whose slot is in the
future sleeps exactly until it, so callers are served in arrival order with one round trip each
and no polling. This paces the calls of an attempt that is running; it never postpones a failed
one (that is next_attempt_at).

Why no burst: Stripe counts requests over a second. The token bucket this replaces kept a full
second of tokens, so after any pause the fleet sent that second's worth at once *and* the next
second's refill: twice the rate within one second (tests/test_rate_limit.py saw 200 grants in
one second at 100/s), and Stripe answers the excess with 429s we caused ourselves. An idle
schedule saves nothing up here: the next slot is never earlier than now.

Why 5% headroom: a slot is when the caller may *send*; the request reaches Stripe a little
later, and by a different amount each time (the caller wakes late on a busy machine, the network
queues). Calls paced exactly at the rate would bunch past it at the receiving end whenever one
is delayed and the next is not. Pacing at 95% leaves 50 ms of such jitter per second before a
second at Stripe holds more than the rate, and still uses 95% of it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import redis

from sync.errors import RateLimiterTimeout

HEADROOM = 0.95
# Half of the 50 ms a second that the headroom leaves for calls that arrive late.
LATE = 0.025
LATE_RETRIES = 3

# KEYS[1]: the next free slot (seconds on Redis's clock, as a string). Returns {wait, slot} as
# strings ('%.6f': tostring would keep only 14 significant digits, 0.1 ms of an epoch time),
# or {'-1', '0'} when the slot is more than max_wait away (nothing is reserved then).
_RESERVE = """
local interval = tonumber(ARGV[1])
local max_wait = tonumber(ARGV[2])
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local slot = tonumber(redis.call('GET', KEYS[1])) or now
if slot < now then slot = now end
local wait = slot - now
if wait > max_wait then return {'-1', '0'} end
redis.call('SET', KEYS[1], string.format('%.6f', slot + interval), 'EX', 60 + math.ceil(max_wait))
return {string.format('%.6f', wait), string.format('%.6f', slot)}
"""


@dataclass(frozen=True)
class Grant:
    at: float  # the slot, in seconds on Redis's clock (epoch)
    wait: float  # how long the caller had to wait for it


class RateLimiter:
    def __init__(
        self, client: redis.Redis, *, per_second: float, key: str, headroom: float = HEADROOM
    ) -> None:
        self.client = client
        self.rate = per_second
        # The spacing between two calls of the whole fleet.
        self.interval = 1.0 / (per_second * headroom)
        self.key = key
        self._reserve = client.register_script(_RESERVE)

    def reserve(self, *, max_wait: float = 30.0) -> Grant:
        """Take the next slot without waiting for it. Raises RateLimiterTimeout (a retry, not a
        failure) when it is more than max_wait away, without reserving anything."""
        wait, at = self._reserve(keys=[self.key], args=[repr(self.interval), max_wait])
        grant = Grant(at=float(at), wait=float(wait))
        if grant.wait < 0:
            raise RateLimiterTimeout(f"no Stripe rate-limit slot within {max_wait:.0f}s")
        return grant

    def acquire(
        self,
        *,
        max_wait: float = 30.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> Grant:
        """Take the next slot and sleep until it (see `reserve`).

        A caller that wakes more than LATE past its slot (its process was not scheduled in
        time) does not send late, where its call would land next to the following caller's
        on-time one and push a second past the rate: it lets that slot go and takes a new one,
        at most LATE_RETRIES times, then sends anyway (a rare 429 is a retry, not a failure).
        """
        for attempt in range(LATE_RETRIES + 1):
            grant = self.reserve(max_wait=max_wait)
            due = clock() + grant.wait
            if grant.wait > 0:
                sleep(grant.wait)
            if attempt == LATE_RETRIES or clock() - due <= LATE:
                return grant
        raise AssertionError("unreachable: the last attempt returns")
