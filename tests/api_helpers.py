"""Talking to the API over HTTP in tests: a real Starlette app behind httpx's ASGI transport."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.testclient import TestClient

from gql.app import create_app
from gql.core.limits import DEFAULT_LIMITS, Limits
from models.db import make_engine
from settings import Settings


@dataclass
class Api:
    client: TestClient
    enqueued: list[int] = field(default_factory=list)

    def gql(self, query: str, token: str | None, **variables: Any) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        response = self.client.post(
            "/graphql", json={"query": query, "variables": variables}, headers=headers
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    def data(self, query: str, token: str | None, **variables: Any) -> dict[str, Any]:
        body = self.gql(query, token, **variables)
        assert "errors" not in body, body["errors"]
        data: dict[str, Any] = body["data"]
        return data


@dataclass
class MovableClock:
    """The app's clock in tests that move time instead of sleeping (`clock.now += ...`)."""

    now: datetime

    def __call__(self) -> datetime:
        return self.now


def api_app(
    settings: Settings,
    enqueue_sync: Callable[[int], None],
    *,
    limits: Limits = DEFAULT_LIMITS,
    clock: Callable[[], datetime] | None = None,
    metrics_collectors: Callable[[sa.Engine, redis.Redis], Sequence[Collector]] | None = None,
) -> Starlette:
    """The app as `bootstrap.asgi_app` builds it: an engine with the limits' timeouts and a Redis
    client with short ones, owned (and disposed) by the app's lifespan."""
    assert settings.database_url is not None and settings.redis_url is not None
    engine = make_engine(
        settings.database_url,
        pool_size=settings.db_pool_size,
        pool_timeout=limits.db_pool_timeout_seconds,
        connect_timeout=limits.db_connect_timeout_seconds,
        statement_timeout_ms=limits.db_statement_timeout_ms,
    )
    client = redis.Redis.from_url(settings.redis_url, socket_timeout=1, socket_connect_timeout=1)
    return create_app(
        settings,
        engine=engine,
        redis=client,
        enqueue_sync=enqueue_sync,
        metrics_collectors=metrics_collectors(engine, client) if metrics_collectors else (),
        limits=limits,
        **({"clock": clock} if clock is not None else {}),
    )


@pytest.fixture
def api(database_url: str, redis_url: str) -> Iterator[Api]:
    enqueued: list[int] = []
    settings = Settings(database_url=database_url, redis_url=redis_url)
    app = create_app(
        settings,
        engine=make_engine(database_url, pool_size=settings.db_pool_size),
        redis=redis.Redis.from_url(redis_url, socket_timeout=1),
        enqueue_sync=enqueued.append,
    )
    with TestClient(app) as client:  # its lifespan disposes the engine and Redis client
        yield Api(client=client, enqueued=enqueued)


class QueryCounter:
    """Counts SQL statements sent through an engine (before_cursor_execute)."""

    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        self.statements: list[str] = []

    def __enter__(self) -> QueryCounter:
        sa.event.listen(self.engine, "before_cursor_execute", self._count)
        return self

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._count)

    def _count(self, conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        self.statements.append(statement)


__all__ = ["Api", "MovableClock", "QueryCounter", "api", "httpx"]
