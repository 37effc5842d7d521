"""Idempotency keys as Stripe keeps them.

A key remembers the endpoint, the params and, once execution has begun, the response. A
retry with the same key and params replays that response; other params are an
idempotency_error; a retry while the first request still runs gets 409. Results are kept
only once execution began: a request rejected before (injected 500/429, bad params) leaves
the key free. Keys expire `ttl` seconds after first use, after which the key is new again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import errors

MAX_KEY_LENGTH = 255
# Expired entries are swept every this many claims, so a long benchmark run does not keep
# every response body it ever sent.
_SWEEP_EVERY = 1000


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: bytes
    headers: tuple[tuple[str, str], ...]
    request_id: str


@dataclass
class _Entry:
    target: str
    params: dict[str, Any]
    first_used: float
    response: StoredResponse | None = None


@dataclass(frozen=True)
class Replay:
    response: StoredResponse


class Execute:
    """The caller owns the key until it calls `complete` or `release`."""


class IdempotencyRegistry:
    def __init__(self, ttl_seconds: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_seconds = ttl_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._claims = 0

    def begin(self, key: str, target: str, params: dict[str, Any]) -> Replay | Execute:
        """Claim `key` for `target` (`METHOD /path`) or return the response to replay."""
        if len(key) > MAX_KEY_LENGTH:
            raise errors.ParamError(
                f"Idempotency keys can be at most {MAX_KEY_LENGTH} characters long",
                param="Idempotency-Key",
            )
        with self._lock:
            now = self._clock()
            self._claims += 1
            if self._claims % _SWEEP_EVERY == 0:
                self._sweep(now)
            entry = self._entries.get(key)
            if entry is not None and entry.response is not None and self._expired(entry, now):
                entry = None
            if entry is None:
                self._entries[key] = _Entry(target=target, params=params, first_used=now)
                return Execute()
            if entry.target != target or entry.params != params:
                raise errors.idempotency_mismatch(key)
            if entry.response is None:
                raise errors.idempotency_in_use(key)
            return Replay(entry.response)

    def complete(self, key: str, response: StoredResponse) -> None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.response is None:
                entry.response = response

    def release(self, key: str) -> None:
        """Forget a claimed key whose request never started executing."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry.response is None:
                del self._entries[key]

    def reset(self, ttl_seconds: float) -> None:
        with self._lock:
            self._entries.clear()
            self.ttl_seconds = ttl_seconds

    def _sweep(self, now: float) -> None:
        for key, entry in list(self._entries.items()):
            if entry.response is not None and self._expired(entry, now):
                del self._entries[key]

    def _expired(self, entry: _Entry, now: float) -> bool:
        return now - entry.first_used >= self.ttl_seconds
