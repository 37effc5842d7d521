"""A circuit breaker for authentication errors, shared by every worker through Redis.

A 401 from Stripe means our API key is wrong (revoked, rotated, expired) for every request:
failing invoices one by one would burn their attempts and send Stripe a stream of doomed calls.
So the first 401 opens the breaker: no attempt starts and no call is made while it is open, and
the sweeper enqueues nothing. When the open period ends (a Redis TTL, so it ends even if every
worker died), the breaker is half-open: exactly one attempt is admitted as the probe (SET NX).
A success closes it; another 401 opens it again for twice as long, up to five minutes.
"""

from __future__ import annotations

from enum import StrEnum

import redis

MAX_OPEN_SECONDS = 300.0
# A half-open probe that never reports back (its worker died) frees the slot after this long.
PROBE_SECONDS = 30.0

# A 401 while already open came from a call that started before the breaker opened: it says
# nothing new, so it neither counts as a trip nor extends the open period.
_TRIP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return tostring(redis.call('PTTL', KEYS[1]) / 1000) end
local trips = redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], 86400)
local seconds = math.min(tonumber(ARGV[2]), tonumber(ARGV[1]) * 2 ^ (trips - 1))
redis.call('SET', KEYS[1], trips, 'PX', math.max(1, math.floor(seconds * 1000)))
redis.call('DEL', KEYS[3])
return tostring(seconds)
"""

_ADMIT = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('EXISTS', KEYS[2]) == 0 then return 1 end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) then return 2 end
return 0
"""


class BreakerState(StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class Breaker:
    def __init__(self, client: redis.Redis, *, base_seconds: float, namespace: str) -> None:
        self.client = client
        self.base_seconds = base_seconds
        self.open_key = f"{namespace}:breaker:open"  # exists while open (TTL = open period)
        self.trips_key = f"{namespace}:breaker:trips"  # 401s since the last success
        self.probe_key = f"{namespace}:breaker:probe"  # the one half-open probe in flight
        self._admit = client.register_script(_ADMIT)
        self._trip = client.register_script(_TRIP)

    def admit(self) -> bool:
        """May an attempt start now? Always when closed, never when open, and only for the one
        caller that becomes the probe when half-open."""
        probe_ms = int(min(PROBE_SECONDS, max(1.0, self.base_seconds)) * 1000)
        return (
            int(self._admit(keys=[self.open_key, self.trips_key, self.probe_key], args=[probe_ms]))
            > 0
        )

    def is_open(self) -> bool:
        return bool(self.client.exists(self.open_key))

    def trip(self) -> float:
        """Open after a 401 (twice as long as last time while no call has succeeded since);
        returns how long it stays open, in seconds."""
        keys = [self.open_key, self.trips_key, self.probe_key]
        return float(self._trip(keys=keys, args=[self.base_seconds, MAX_OPEN_SECONDS]))

    def record_success(self) -> None:
        """A call went through: the key works again, so close the breaker."""
        if self.client.exists(self.trips_key):
            self.client.delete(self.trips_key, self.probe_key, self.open_key)

    def open_seconds_left(self) -> float:
        ms = int(self.client.pttl(self.open_key))
        return max(0.0, ms / 1000)

    def state(self) -> BreakerState:
        if self.client.exists(self.open_key):
            return BreakerState.OPEN
        if self.client.exists(self.trips_key):
            return BreakerState.HALF_OPEN
        return BreakerState.CLOSED
