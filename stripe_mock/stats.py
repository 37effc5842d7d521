"""Request counts by endpoint template and outcome, for exactly-once checks from outside."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

# Outcomes that are not HTTP statuses: the client never got an answer.
LOST = "lost"
TIMEOUT = "timeout"
# Requests that matched no endpoint, so typos in client URLs show up in the stats.
UNMATCHED = "unmatched"


class Stats:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[tuple[str, str]] = Counter()
        self._faults: Counter[str] = Counter()
        self._replays = 0
        self._rate_limited = 0

    def record(self, endpoint: str, outcome: int | str, *, replayed: bool = False) -> None:
        with self._lock:
            self._requests[(endpoint, str(outcome))] += 1
            if replayed:
                self._replays += 1

    def record_rate_limited(self) -> None:
        with self._lock:
            self._rate_limited += 1

    def record_fault(self, fault: str) -> None:
        with self._lock:
            self._faults[fault] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            by_endpoint: dict[str, dict[str, int]] = {}
            for (endpoint, outcome), n in sorted(self._requests.items()):
                by_endpoint.setdefault(endpoint, {})[outcome] = n
            return {
                "requests": by_endpoint,
                "total": sum(self._requests.values()),
                "idempotent_replays": self._replays,
                "faults": dict(sorted(self._faults.items())),
                # 429s of the rate limit (not injected ones): ones the client caused.
                "rate_limited": self._rate_limited,
            }

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._faults.clear()
            self._replays = 0
            self._rate_limited = 0
