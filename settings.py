"""Process settings, read once from the environment.

Every value has a default that works on a developer machine; `DATABASE_URL` and `REDIS_URL`
are optional because the composition root starts embedded servers when they are missing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parent


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    return int(raw) if raw else default


def _env_float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    return float(raw) if raw else default


def _env_duration(name: str, default: float) -> float:
    """Seconds, from "7200", "120m" or "2h"."""
    raw = (os.environ.get(name) or "").strip().lower()
    if not raw:
        return default
    scale = {"s": 1, "m": 60, "h": 3600}.get(raw[-1])
    try:
        return float(raw[:-1]) * scale if scale else float(raw)
    except ValueError:
        raise ValueError(f"{name} must be seconds or a duration such as 2h or 90m") from None


@dataclass(frozen=True)
class Settings:
    database_url: str | None = field(default_factory=lambda: os.environ.get("DATABASE_URL"))
    redis_url: str | None = field(default_factory=lambda: os.environ.get("REDIS_URL"))
    local_dir: Path = field(
        default_factory=lambda: Path(os.environ.get("BILLING_LOCAL_DIR", PROJECT_ROOT / ".local"))
    )
    stripe_api_base: str = field(
        default_factory=lambda: os.environ.get("STRIPE_API_BASE", "http://127.0.0.1:12111")
    )
    stripe_api_key: str = field(
        default_factory=lambda: os.environ.get("STRIPE_API_KEY", "sk_test_billing_local")
    )
    stripe_rate_limit_per_second: float = field(
        default_factory=lambda: _env_float("STRIPE_RATE_LIMIT", 25.0)
    )
    stripe_lines_chunk: int = field(default_factory=lambda: _env_int("STRIPE_LINES_CHUNK", 50))
    sync_max_attempts: int = field(default_factory=lambda: _env_int("SYNC_MAX_ATTEMPTS", 8))
    rollup_platform_shards: int = field(default_factory=lambda: _env_int("ROLLUP_SHARDS", 16))
    db_pool_size: int = field(default_factory=lambda: _env_int("DB_POOL_SIZE", 10))
    # How long after a period ends its close starts: late events of the period still land on its
    # own invoice meanwhile (the metering pipeline's lag, with room to spare).
    close_grace_seconds: float = field(
        default_factory=lambda: _env_duration("BILLING_CLOSE_GRACE", 7200.0)
    )


def load() -> Settings:
    return Settings()
