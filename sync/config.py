"""Sync settings: environment values with defaults that work against the local mock."""

from __future__ import annotations

import os
from dataclasses import dataclass, field


def _f(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _i(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


@dataclass(frozen=True)
class SyncConfig:
    database_url: str = field(default_factory=lambda: os.environ.get("DATABASE_URL", ""))
    redis_url: str = field(
        default_factory=lambda: os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/0")
    )
    queue: str = field(default_factory=lambda: os.environ.get("BILLING_SYNC_QUEUE", "billing-sync"))
    stripe_api_base: str = field(
        default_factory=lambda: os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")
    )
    stripe_api_key: str = field(
        default_factory=lambda: os.environ.get("STRIPE_API_KEY", "sk_test_billing_local")
    )
    stripe_timeout_seconds: float = field(default_factory=lambda: _f("STRIPE_TIMEOUT", 20.0))
    rate_limit_per_second: float = field(default_factory=lambda: _f("STRIPE_RATE_LIMIT", 25.0))
    lines_chunk: int = field(default_factory=lambda: _i("STRIPE_LINES_CHUNK", 50))
    max_attempts: int = field(default_factory=lambda: _i("SYNC_MAX_ATTEMPTS", 8))
    backoff_base_seconds: float = field(default_factory=lambda: _f("SYNC_BACKOFF_BASE", 2.0))
    backoff_cap_seconds: float = field(default_factory=lambda: _f("SYNC_BACKOFF_CAP", 600.0))
    lease_seconds: float = field(default_factory=lambda: _f("SYNC_LEASE_SECONDS", 180.0))
    breaker_seconds: float = field(default_factory=lambda: _f("SYNC_BREAKER_SECONDS", 30.0))
    sweep_every_seconds: float = field(default_factory=lambda: _f("SYNC_SWEEP_EVERY", 2.0))
    sweep_batch: int = field(default_factory=lambda: _i("SYNC_SWEEP_BATCH", 500))
    reconcile_every_seconds: float = field(
        default_factory=lambda: _f("SYNC_RECONCILE_EVERY", 300.0)
    )
    reconcile_after_seconds: float = field(
        default_factory=lambda: _f("SYNC_RECONCILE_AFTER", 86400.0)
    )
    reconcile_batch: int = field(default_factory=lambda: _i("SYNC_RECONCILE_BATCH", 20))
