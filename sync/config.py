"""Sync settings: the shared ones from `settings.Settings`, the sync-only ones from the
environment. Read when a process first needs them (never at import), so the composition root
can fill in DATABASE_URL and REDIS_URL before any worker, beat or API process builds its own.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import settings as settings_mod

DEFAULT_QUEUE = "billing-sync"


def _f(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _i(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class SyncConfig:
    database_url: str
    redis_url: str
    # The Celery queue, and the namespace of our Redis keys (rate limit bucket, breaker): two
    # deployments or two test runs sharing one Redis never see each other's messages or state.
    queue: str
    stripe_api_base: str
    stripe_api_key: str
    stripe_timeout_seconds: float
    stripe_connect_timeout_seconds: float
    rate_limit_per_second: float
    lines_chunk: int
    max_attempts: int
    backoff_base_seconds: float
    backoff_cap_seconds: float
    # A claim holds the invoice this long; it must outlast the task's hard time limit, so a
    # live attempt never loses its lease to a second worker.
    lease_seconds: float
    breaker_seconds: float
    sweep_every_seconds: float
    sweep_batch: int
    # How long an enqueued row is left alone by the sweeper: covers the wait in the queue.
    sweep_hold_seconds: float
    # The sweeper tops the queue up to this depth, never more (back-pressure on month end).
    max_queue_depth: int
    reconcile_every_seconds: float
    reconcile_after_seconds: float
    reconcile_batch: int
    close_every_seconds: float

    @classmethod
    def load(cls) -> SyncConfig:
        s = settings_mod.load()
        return cls(
            database_url=s.database_url or "",
            redis_url=s.redis_url or "redis://127.0.0.1:6379/0",
            queue=os.environ.get("BILLING_SYNC_QUEUE") or DEFAULT_QUEUE,
            stripe_api_base=s.stripe_api_base,
            stripe_api_key=s.stripe_api_key,
            stripe_timeout_seconds=_f("STRIPE_TIMEOUT", 20.0),
            stripe_connect_timeout_seconds=_f("STRIPE_CONNECT_TIMEOUT", 5.0),
            rate_limit_per_second=s.stripe_rate_limit_per_second,
            lines_chunk=s.stripe_lines_chunk,
            max_attempts=s.sync_max_attempts,
            backoff_base_seconds=_f("SYNC_BACKOFF_BASE", 2.0),
            backoff_cap_seconds=_f("SYNC_BACKOFF_CAP", 600.0),
            lease_seconds=_f("SYNC_LEASE_SECONDS", 180.0),
            breaker_seconds=_f("SYNC_BREAKER_SECONDS", 30.0),
            sweep_every_seconds=_f("SYNC_SWEEP_EVERY", 2.0),
            sweep_batch=_i("SYNC_SWEEP_BATCH", 500),
            sweep_hold_seconds=_f("SYNC_SWEEP_HOLD", 60.0),
            max_queue_depth=_i("SYNC_MAX_QUEUE_DEPTH", 2000),
            reconcile_every_seconds=_f("SYNC_RECONCILE_EVERY", 300.0),
            reconcile_after_seconds=_f("SYNC_RECONCILE_AFTER", 86400.0),
            reconcile_batch=_i("SYNC_RECONCILE_BATCH", 20),
            close_every_seconds=_f("BILLING_CLOSE_EVERY", 300.0),
        )
