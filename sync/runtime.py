"""The per-process wiring of the sync (`Runtime`: sessions, Stripe gateway with its limiter and
breaker, config, jitter), and where it is built.

A worker process builds its own on first use, after Celery's fork (so no connection is shared
between worker processes), from the config the composition root handed over with `configure`.
Tests and benchmarks build their own with `build(config)` and may `install` it for the Celery
tasks of their process.
"""

from __future__ import annotations

import random
import threading
from dataclasses import dataclass, field

import redis
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models.db import make_engine, session_factory
from sync.breaker import Breaker
from sync.config import SyncConfig
from sync.limiter import RateLimiter
from sync.stripe_client import StripeGateway, make_client


@dataclass
class Runtime:
    """What an attempt needs, built once per process."""

    sessions: sessionmaker[Session]
    gateway: StripeGateway
    config: SyncConfig
    # The backoff's jitter: seeded in tests, so a run's delays are the same every time.
    rng: random.Random = field(default_factory=random.Random)


_lock = threading.Lock()
_config: SyncConfig | None = None
_current: Runtime | None = None


def redis_client(config: SyncConfig) -> redis.Redis:
    return redis.Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=2)


def breaker(client: redis.Redis, config: SyncConfig) -> Breaker:
    return Breaker(client, base_seconds=config.breaker_seconds, namespace=config.queue)


def build(
    config: SyncConfig,
    *,
    pool_size: int = 2,
    engine: sa.Engine | None = None,
    redis: redis.Redis | None = None,
    rng: random.Random | None = None,
) -> Runtime:
    """A Runtime on `config`; on the given engine and Redis client when the caller owns them
    (and disposes them), else on its own."""
    client = redis or redis_client(config)
    gateway = StripeGateway(
        client=make_client(
            config.stripe_api_key.get_secret_value(),
            config.stripe_api_base,
            timeout=config.stripe_timeout_seconds,
            connect_timeout=config.stripe_connect_timeout_seconds,
        ),
        limiter=RateLimiter(
            client, per_second=config.rate_limit_per_second, key=f"{config.queue}:stripe:bucket"
        ),
        breaker=breaker(client, config),
    )
    engine = engine or make_engine(config.database_url, pool_size=pool_size)
    return Runtime(
        sessions=session_factory(engine),
        gateway=gateway,
        config=config,
        rng=rng or random.Random(),
    )


def configure(config: SyncConfig) -> None:
    """The config this process's Runtime is built from (by the composition root, before any
    task runs). Plain data, so it survives Celery's fork; the Runtime itself is built after."""
    global _config
    with _lock:
        _config = config


def config() -> SyncConfig:
    if _config is None:
        raise RuntimeError(
            "the sync is not configured: start it through `billing ...` (bootstrap.sync_config)"
        )
    return _config


def current() -> Runtime:
    global _current
    with _lock:
        if _current is None:
            if _config is None:
                raise RuntimeError("the sync is not configured: start it through `billing ...`")
            _current = build(_config)
        return _current


def install(runtime: Runtime | None) -> None:
    """Use this runtime for the tasks of this process (None: build from the configured one on
    first use)."""
    global _current
    with _lock:
        _current = runtime
