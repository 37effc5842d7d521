"""A circuit breaker for authentication errors, shared by all workers through Redis.

A 401 from Stripe means our key is wrong for every request: failing invoices one by one would
burn their attempts and flood Stripe with doomed calls. So the first 401 opens the breaker:
nothing calls Stripe while it is open. When it times out, exactly one caller may probe (a
half-open state guarded by SET NX); the probe's success closes the breaker, another 401 opens it
again for twice as long (up to 5 minutes).
"""

from __future__ import annotations

import redis

MAX_OPEN_SECONDS = 300


class Breaker:
    def __init__(
        self, client: redis.Redis, *, base_seconds: float, namespace: str = "billing"
    ) -> None:
        self.client = client
        self.base = base_seconds
        # Keys per deployment (its queue name), so test runs and a dev stack sharing one Redis
        # never trip each other's breaker.
        self.open_key = (
            f"{namespace}:breaker:open"  # exists while no call may be made (TTL = open period)
        )
        self.tripped_key = f"{namespace}:breaker:tripped"  # from the first 401 to the first success
        self.probe_key = f"{namespace}:breaker:probe"  # the one half-open probe in flight

    def allow(self) -> bool:
        """May this caller call Stripe now? At most one caller is let through while half-open."""
        if self.client.exists(self.open_key):
            return False
        if not self.client.exists(self.tripped_key):
            return True
        return bool(self.client.set(self.probe_key, "1", nx=True, ex=max(1, int(self.base))))

    def record_auth_failure(self) -> None:
        trips = int(self.client.incr(self.tripped_key))
        seconds = min(MAX_OPEN_SECONDS, self.base * 2 ** (trips - 1))
        self.client.set(self.open_key, str(trips), px=max(1, int(seconds * 1000)))
        self.client.delete(self.probe_key)

    def record_success(self) -> None:
        if self.client.exists(self.tripped_key):
            self.client.delete(self.tripped_key, self.probe_key, self.open_key)

    def is_open(self) -> bool:
        return bool(self.client.exists(self.open_key))

    def state(self) -> str:
        if self.client.exists(self.open_key):
            return "open"
        return "half_open" if self.client.exists(self.tripped_key) else "closed"
