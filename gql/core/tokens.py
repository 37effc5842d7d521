"""A short-lived cache of token -> viewer, so a request does not pay a query to learn who calls.

Why it is safe: only live tokens are cached, each for at most `ttl_seconds` (5 s), and never
past the token's own `revoked_at` when that is set in the future. So a token revoked in the
database (tokens are revoked there: `UPDATE api_tokens SET revoked_at = now()`) stops working
in every worker within `ttl_seconds`, and a token revoked ahead of time stops on the second.
Unknown tokens are not cached: a token created a moment ago works on its first request, and a
stream of made-up tokens cannot fill the cache. Entries are keyed by the token's SHA-256, so
no plaintext token stays in memory; the cache is bounded (oldest dropped first).

The clock is the request's `now`, passed in, so tests move time instead of sleeping.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TypeVar

V = TypeVar("V")

TOKEN_CACHE_SECONDS = 5.0


class TokenCache:
    def __init__(self, ttl_seconds: float = TOKEN_CACHE_SECONDS, max_entries: int = 10_000) -> None:
        self.ttl = timedelta(seconds=ttl_seconds)
        self.max_entries = max_entries
        self.entries: OrderedDict[str, tuple[datetime, object]] = OrderedDict()
        self.lock = threading.Lock()  # GraphQL runs on worker threads (gql/core/executor.py)

    def get_or_resolve(
        self,
        key: str,
        now: datetime,
        resolve: Callable[[], tuple[V, datetime | None] | None],
    ) -> V | None:
        """The cached value for `key` while fresh; else `resolve()`, which answers None (not
        cached) or (value, revoked_at)."""
        if self.ttl <= timedelta(0):
            found = resolve()
            return found[0] if found is not None else None
        with self.lock:
            entry = self.entries.get(key)
        if entry is not None and now < entry[0]:
            return entry[1]  # type: ignore[return-value]
        found = resolve()
        if found is None:
            with self.lock:
                self.entries.pop(key, None)
            return None
        value, revoked_at = found
        until = now + self.ttl
        if revoked_at is not None:
            until = min(until, revoked_at)
        with self.lock:
            self.entries[key] = (until, value)
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
