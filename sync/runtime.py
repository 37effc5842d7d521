"""The per-process wiring of the sync: engine, Redis, Stripe client, limiter, breaker.

Built on first use in the process that runs tasks (after Celery's fork, so no connection is
shared between worker processes), from `SyncConfig.load()`. Tests and benchmarks build their own
with `build(config)` and may `install` it for the Celery tasks of their process.
"""

from __future__ import annotations

import threading

import redis

from models.db import make_engine, session_factory
from sync.attempt import Runtime
from sync.breaker import Breaker
from sync.config import SyncConfig
from sync.limiter import RateLimiter
from sync.stripe_client import StripeGateway, make_client

_lock = threading.Lock()
_current: Runtime | None = None


def redis_client(config: SyncConfig) -> redis.Redis:
    return redis.Redis.from_url(config.redis_url, socket_timeout=5, socket_connect_timeout=2)


def breaker(client: redis.Redis, config: SyncConfig) -> Breaker:
    return Breaker(client, base_seconds=config.breaker_seconds, namespace=config.queue)


def build(config: SyncConfig, *, pool_size: int = 2) -> Runtime:
    if not config.database_url:
        raise RuntimeError("DATABASE_URL is not set: the sync worker needs the billing database")
    client = redis_client(config)
    gateway = StripeGateway(
        client=make_client(
            config.stripe_api_key,
            config.stripe_api_base,
            timeout=config.stripe_timeout_seconds,
            connect_timeout=config.stripe_connect_timeout_seconds,
        ),
        limiter=RateLimiter(
            client, per_second=config.rate_limit_per_second, key=f"{config.queue}:stripe:bucket"
        ),
        breaker=breaker(client, config),
    )
    engine = make_engine(config.database_url, pool_size=pool_size)
    return Runtime(sessions=session_factory(engine), gateway=gateway, config=config)


def current() -> Runtime:
    global _current
    with _lock:
        if _current is None:
            _current = build(SyncConfig.load())
        return _current


def install(runtime: Runtime | None) -> None:
    """Use this runtime for the tasks of this process (None: build from the environment)."""
    global _current
    with _lock:
        _current = runtime
