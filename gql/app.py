"""The Starlette application: /graphql, /dashboard, /healthz, /readyz, /metrics.

Built by `create_app`, called from the composition root (cli.py) with the sync's enqueue
function, so this package never imports Celery.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import redis
import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.registry import Collector
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL

from gql import dashboard
from gql.core.context import Context
from gql.core.enqueue import DeferredEnqueue
from gql.core.errors import request_id_var
from gql.core.http import GraphQLOverHTTP, RequestBodyLimit
from gql.core.limits import DEFAULT_LIMITS, Limits
from gql.core.permissions import viewer_from_authorization
from gql.schema import build_schema, schema
from models.db import make_engine, session_factory
from settings import Settings

log = logging.getLogger("billing.api")
Readiness = Callable[[], tuple[str, bool, str]]  # (name, ok, detail)


class RequestContext:
    """Pure ASGI middleware: a request id (X-Request-Id in and out), one JSON access log line,
    and the request's database session closed when the response is done."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        request_id = headers.get(b"x-request-id", b"").decode()[:64] or uuid.uuid4().hex[:16]
        token = request_id_var.set(request_id)
        scope.setdefault("state", {})
        started = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            session = scope["state"].pop("db_session", None)
            if session is not None:
                session.close()
            if scope["path"] not in ("/healthz", "/metrics"):
                log.info(
                    "request",
                    extra={
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": status,
                        "duration_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                )
            request_id_var.reset(token)


class BillingGraphQL(GraphQLOverHTTP, GraphQL[Context, None]):
    def __init__(
        self,
        settings: Settings,
        enqueue_sync: Callable[[int], None],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(
            schema if limits == DEFAULT_LIMITS else build_schema(limits),
            graphql_ide="graphiql",
            allow_queries_via_get=False,
        )
        assert settings.database_url is not None
        self.limits = limits
        self.engine = make_engine(
            settings.database_url,
            pool_size=settings.db_pool_size,
            pool_timeout=limits.db_pool_timeout_seconds,
            connect_timeout=limits.db_connect_timeout_seconds,
            statement_timeout_ms=limits.db_statement_timeout_ms,
        )
        self.sessions = session_factory(self.engine)
        self.enqueue_sync = enqueue_sync
        self.rollup_shards = settings.rollup_platform_shards

    async def get_context(self, request: Any, response: Any) -> Context:
        session = self.sessions()
        request.scope.setdefault("state", {})["db_session"] = session
        return Context(
            session=session,
            viewer_or_none=viewer_from_authorization(
                session, request.headers.get("authorization", ""), now=datetime.now(UTC)
            ),
            # Recorded by mutations, sent off the event loop after the operation.
            enqueue_sync=DeferredEnqueue(self.enqueue_sync, self.limits.enqueue_timeout_seconds),
            rollup_shards=self.rollup_shards,
            request_id=request_id_var.get(),
        )


class _ScrapeOnly(Collector):
    """A collector the registry reads only at scrape time. Registering a collector without
    `describe` makes prometheus_client call `collect` at once, so a database that accepts
    connections and never answers kept the API from starting."""

    def __init__(self, inner: Collector) -> None:
        self.inner = inner

    def describe(self) -> list[Any]:
        return []

    def collect(self) -> Any:
        return self.inner.collect()


_SCRAPE_ONLY: dict[type[Collector], _ScrapeOnly] = {}


def create_app(
    settings: Settings,
    *,
    enqueue_sync: Callable[[int], None],
    readiness: Sequence[Readiness] = (),
    metrics_collectors: Sequence[Collector] = (),
    limits: Limits = DEFAULT_LIMITS,
) -> Starlette:
    graphql = BillingGraphQL(settings, enqueue_sync, limits)
    redis_client = (
        redis.Redis.from_url(settings.redis_url, socket_timeout=1) if settings.redis_url else None
    )

    def check_database() -> tuple[str, bool, str]:
        try:
            with graphql.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return "database", True, "ok"
        except Exception as e:  # readiness reports any failure; it must not raise
            return "database", False, type(e).__name__

    def check_redis() -> tuple[str, bool, str]:
        if redis_client is None:
            return "redis", False, "REDIS_URL not set"
        try:
            redis_client.ping()
            return "redis", True, "ok"
        except redis.RedisError as e:
            return "redis", False, type(e).__name__

    checks: list[Readiness] = [check_database, check_redis, *readiness]
    for collector in metrics_collectors:
        # One per kind: an app built later in this process (the tests build several) takes over.
        registered = _SCRAPE_ONLY.get(type(collector))
        if registered is None:
            registered = _SCRAPE_ONLY[type(collector)] = _ScrapeOnly(collector)
            REGISTRY.register(registered)
        registered.inner = collector

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def readyz(request: Request) -> Response:
        results = [check() for check in checks]
        ok = all(r[1] for r in results)
        body = {"status": "ok" if ok else "unavailable", "checks": {n: d for n, _, d in results}}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            Route("/graphql", graphql, methods=["GET", "POST"]),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *dashboard.routes(),
        ],
        middleware=[
            Middleware(RequestContext),
            Middleware(RequestBodyLimit, max_bytes=limits.max_body_bytes),
        ],
    )
    app.state.engine = graphql.engine
    return app
