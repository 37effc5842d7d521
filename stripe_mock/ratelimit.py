"""Stripe's own request rate limit: at most N API requests in any sliding second.

Stripe answers the excess with 429 (`rate_limit`) before executing anything. A request refused
here is not counted against the window (a refused request costs Stripe nothing to speak of, and
counting it would lock out a client that retries), so a client at the rate is served at the
rate. Unlike the `rate_limit` fault, which strikes at random, a 429 from this limit is one the
client caused: the count of them (`rate_limited` in `/_mock/stats`) is what a fleet-wide
limiter is judged by.
"""

from __future__ import annotations

import threading
import time
from collections import deque


class SlidingWindow:
    def __init__(self, per_second: float | None) -> None:
        self._lock = threading.Lock()
        self._served: deque[float] = deque()
        self.per_second = per_second
        # The most requests served within one second so far (0 when there is no limit).
        self.peak = 0

    def configure(self, per_second: float | None) -> None:
        with self._lock:
            self.per_second = per_second
            self._served.clear()
            self.peak = 0

    def admit(self) -> bool:
        """Count one request; False when the last second already holds the limit."""
        with self._lock:
            if self.per_second is None:
                return True
            now = time.monotonic()
            while self._served and now - self._served[0] >= 1.0:
                self._served.popleft()
            if len(self._served) >= self.per_second:
                return False
            self._served.append(now)
            self.peak = max(self.peak, len(self._served))
            return True
