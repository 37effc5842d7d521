"""`create_app` over the engine and Redis client the composition root built: /readyz checks
those very objects (nothing is re-read or rebuilt per request), and the lifespan disposes
them when the app shuts down."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import redis
from starlette.testclient import TestClient

from gql.app import create_app
from models.db import make_engine
from settings import Settings
from tests.sync_helpers import free_port


def test_readyz_uses_the_given_objects_and_the_lifespan_disposes_them(
    database_url: str, redis_url: str
) -> None:
    engine = make_engine(database_url, pool_size=1)
    dead = redis.Redis.from_url(f"redis://127.0.0.1:{free_port()}/0", socket_timeout=1)
    calls: list[str] = []
    checks: list[int] = []
    real_dispose, real_close = engine.dispose, dead.close

    def dispose(*a: Any, **kw: Any) -> None:
        calls.append("engine.dispose")
        real_dispose(*a, **kw)

    def close() -> None:
        calls.append("redis.close")
        real_close()

    engine.dispose = dispose  # type: ignore[method-assign]
    dead.close = close  # type: ignore[method-assign]

    def sync_check() -> tuple[str, bool, str]:
        checks.append(1)
        return "stripe_sync", True, "ok"

    app = create_app(
        Settings(database_url=database_url, redis_url=redis_url),
        engine=engine,
        redis=dead,  # not the settings' REDIS_URL: readyz must use what it was handed
        enqueue_sync=lambda _id: None,
        readiness=[sync_check],
    )
    with TestClient(app) as client:
        for _ in range(2):
            body = client.get("/readyz").json()
            assert body["checks"]["database"] == "ok"
            assert body["checks"]["redis"] != "ok" and body["status"] == "unavailable"
        assert calls == []
    assert checks == [1, 1]
    assert sorted(calls) == ["engine.dispose", "redis.close"]


@pytest.mark.parametrize("mode", ["all", "errors"])
def test_the_access_log_can_leave_out_successes(
    database_url: str, redis_url: str, mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    """`API_ACCESS_LOG=errors` (the dev stack's setting) keeps the lines of failed requests
    only, so a metering feed's routine posts do not bury the banner."""
    settings = Settings.model_validate(
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, "API_ACCESS_LOG": mode}
    )
    app = create_app(
        settings,
        engine=make_engine(database_url, pool_size=1),
        redis=redis.Redis.from_url(redis_url, socket_timeout=1),
        enqueue_sync=lambda _: None,
    )
    caplog.set_level(logging.INFO, logger="billing.api")
    with TestClient(app) as client:
        client.get("/dashboard")
        client.post("/graphql", json={"query": "{ viewer { isAdmin } }"})  # no token: 200 + error
        client.post("/graphql", content=b"not json", headers={"content-type": "application/json"})
    logged = [r.status for r in caplog.records if getattr(r, "path", None)]  # type: ignore[attr-defined]
    assert logged == ([200, 200, 400] if mode == "all" else [400])
