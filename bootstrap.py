"""The composition root: builds settings, engines, the Redis client, the Celery app's config and
the ASGI app, and nothing else. The only module that imports gql, sync and models together.

It parses the settings (`settings.Settings`, the only reader of the environment besides the
embedded-server lookup here), resolves where PostgreSQL and Redis are (the environment, or
embedded servers started on demand), exports them to child processes, and wires the API to the
sync through a plain `enqueue_sync(invoice_id)` callable, so that `gql` never imports Celery.
`cli.py` is the table of commands; each command (`commands/`) asks this module for what it needs.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

import outage
from settings import Settings, SettingsError

if TYPE_CHECKING:
    import redis
    import sqlalchemy as sa
    from sqlalchemy.orm import sessionmaker
    from sqlmodel import Session
    from starlette.routing import BaseRoute

    from gql.core.limits import Limits
    from sync.config import SyncConfig


def settings() -> Settings:
    """The environment, parsed once; a bad value ends the command with its variable named."""
    try:
        return Settings.from_env()
    except SettingsError as e:
        print(f"billing: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def environment() -> Settings:
    """Settings with DATABASE_URL and REDIS_URL filled in (embedded servers when unset), exported
    so that every process started from here talks to the same servers."""
    base = settings()
    if base.database_url and base.redis_url:
        db_url, redis_url = base.database_url, base.redis_url
    else:  # only then: the embedded servers' module is slow to import (workers start often)
        from devstack.services import resolve_urls

        db_url, redis_url = resolve_urls(base.database_url, base.redis_url, base.local_dir)
    os.environ["DATABASE_URL"] = db_url
    os.environ["REDIS_URL"] = redis_url
    return base.model_copy(update={"database_url": db_url, "redis_url": redis_url})


def database_url(cfg: Settings) -> str:
    assert cfg.database_url is not None, "environment() resolves DATABASE_URL first"
    return cfg.database_url


def engine(cfg: Settings, *, pool_size: int | None = None) -> sa.Engine:
    """An engine for commands and workers: no statement timeout (a close may run long)."""
    from models.db import make_engine

    return make_engine(database_url(cfg), pool_size=pool_size or cfg.db_pool_size)


def sessions(cfg: Settings, *, pool_size: int = 1) -> sessionmaker[Session]:
    """A session factory over a fresh engine, for a one-shot command."""
    from models.db import session_factory

    return session_factory(engine(cfg, pool_size=pool_size))


def api_engine(cfg: Settings, limits: Limits) -> sa.Engine:
    """The API's engine gives up on a pool checkout, a connect and a statement, so a database
    that never answers costs a request seconds (503), not a worker forever."""
    from models.db import make_engine

    return make_engine(
        database_url(cfg),
        pool_size=cfg.db_pool_size,
        pool_timeout=limits.db_pool_timeout_seconds,
        connect_timeout=limits.db_connect_timeout_seconds,
        statement_timeout_ms=limits.db_statement_timeout_ms,
    )


def redis_client(cfg: Settings) -> redis.Redis:
    import redis

    assert cfg.redis_url is not None
    # Short timeouts: the API's /readyz and /metrics must answer even when Redis hangs.
    return redis.Redis.from_url(cfg.redis_url, socket_timeout=1, socket_connect_timeout=1)


def sync_config(cfg: Settings) -> SyncConfig:
    """The sync's view of the settings, and the Celery app configured with it."""
    from sync import celery_app
    from sync.config import SyncConfig

    sync_cfg = SyncConfig.from_settings(cfg)
    celery_app.configure(sync_cfg)
    return sync_cfg


def webhook_routes(cfg: Settings, api_engine: sa.Engine) -> list[BaseRoute]:
    """`POST /webhooks/stripe` (sync.webhooks verifies, models.payments applies), given to
    `create_app` with the other routes so that gql imports neither sync nor the Stripe SDK."""
    from models.db import session_factory
    from sync import webhooks

    secrets = webhooks.parse_secrets(cfg.stripe_webhook_secrets.get_secret_value())
    return [webhooks.route(session_factory(api_engine), secrets)]


def asgi_app() -> Any:
    """uvicorn factory (`bootstrap:asgi_app`): each worker process builds its own settings (from
    the environment `serve` exported), engine, Redis client and app; the app's lifespan disposes
    the engine and client."""
    from gql import logs
    from gql.app import create_app
    from gql.core.limits import Limits
    from sync import health
    from sync.celery_app import enqueue_sync

    logs.configure()
    cfg = settings()
    sync_cfg = sync_config(cfg)
    limits = Limits.from_settings(cfg)
    db, client = api_engine(cfg, limits), redis_client(cfg)
    # A lost PostgreSQL is told once per outage by this process, not once per request.
    outage.watch_engine(db)
    return create_app(
        cfg,
        engine=db,
        limits=limits,
        redis=client,
        enqueue_sync=enqueue_sync,
        readiness=[health.readiness_check(client, sync_cfg)],
        metrics_collectors=[health.SyncCollector(db, client, sync_cfg)],
        routes=webhook_routes(cfg, db),
    )
