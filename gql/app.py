"""The Starlette application: /graphql, /dashboard, /healthz, /readyz, /metrics.

Built by `create_app`, called from the composition root (bootstrap.py) with the settings, the engine
and Redis client it built for this process, and the sync's enqueue function, so this package
never imports Celery and never reads the environment. The app owns the engine and client it is
handed: its lifespan disposes them on shutdown. The API's limits (gql/core/limits.py) come
in as one `Limits` value; the engine's timeouts are the caller's (bootstrap.py builds them from the
same settings).
"""

from __future__ import annotations

import contextlib
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest
from prometheus_client.registry import Collector
from redis import Redis
from redis.exceptions import RedisError
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.asgi import GraphQL

import outage
from gql import dashboard, graphiql_static
from gql.core.context import Context
from gql.core.enqueue import DeferredEnqueue
from gql.core.errors import request_id_var
from gql.core.executor import BoundedExecutor
from gql.core.http import GraphQLOverHTTP, RequestBodyLimit
from gql.core.limits import DEFAULT_LIMITS, Limits
from gql.core.permissions import viewer_from_authorization
from gql.core.tokens import TokenCache
from gql.schema import build_schema, schema
from gql.usage import http as usage_http
from models.db import session_factory
from settings import Settings

log = logging.getLogger("billing.api")
Readiness = Callable[[], tuple[str, bool, str]]  # (name, ok, detail)


class RequestContext:
    """Pure ASGI middleware: a request id (X-Request-Id in and out), one JSON access log line,
    and the request's database session closed when the response is done."""

    def __init__(self, app: ASGIApp, *, log_successes: bool = True) -> None:
        self.app = app
        self.log_successes = log_successes

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
            if scope["path"] not in ("/healthz", "/metrics") and (
                self.log_successes or status >= 400
            ):
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
        engine: sa.Engine,
        enqueue_sync: Callable[[int], None],
        limits: Limits = DEFAULT_LIMITS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        super().__init__(
            schema if limits == DEFAULT_LIMITS else build_schema(limits),
            graphql_ide="graphiql",
            allow_queries_via_get=False,
        )
        self.limits = limits
        self.engine = engine
        self.sessions = session_factory(engine)
        self.enqueue_sync = enqueue_sync
        self.rollup_shards = settings.rollup_platform_shards
        self.clock = clock
        self.tokens = TokenCache(limits.token_cache_seconds)
        self.executor = BoundedExecutor(limits.graphql_threads, limits.graphql_queue)

    async def render_graphql_ide(self, request: Any) -> Response:
        return graphiql_static.page()  # vendored assets: works offline (Strawberry's uses a CDN)

    async def get_context(self, request: Any, response: Any) -> Context:
        session = self.sessions()
        request.scope.setdefault("state", {})["db_session"] = session
        return Context(
            session=session,
            viewer_or_none=None,  # filled in by `authenticate`, on the operation's thread
            # Recorded by mutations, sent off the event loop after the operation.
            enqueue_sync=DeferredEnqueue(self.enqueue_sync, self.limits.enqueue_timeout_seconds),
            rollup_shards=self.rollup_shards,
            request_id=request_id_var.get(),
        )

    def authenticate(self, request: Any, context: Context) -> None:
        context.viewer_or_none = viewer_from_authorization(
            context.session,
            request.headers.get("authorization", ""),
            now=self.clock(),
            cache=self.tokens,
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


# One per kind of collector: the registry cannot see duplicate names through `_ScrapeOnly`
# (it describes nothing), so an app started later in this process (the tests build several)
# takes the kind over instead of registering it twice.
_SCRAPE_ONLY: dict[type[Collector], _ScrapeOnly] = {}


def create_app(
    settings: Settings,
    *,
    engine: sa.Engine,
    redis: Redis,
    enqueue_sync: Callable[[int], None],
    readiness: Sequence[Readiness] = (),
    metrics_collectors: Sequence[Collector] = (),
    limits: Limits = DEFAULT_LIMITS,
    clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    routes: Sequence[BaseRoute] = (),
) -> Starlette:
    """The app over `engine` and `redis` (owned from here on: disposed by the lifespan).
    `readiness` and `metrics_collectors` are built once by the caller on the same objects.
    `clock` is what token checks call now (tests move it). `routes` are the composition
    root's own (the Stripe webhook), served beside the API's."""
    graphql = BillingGraphQL(settings, engine, enqueue_sync, limits, clock)
    redis_client = redis

    def check_database() -> tuple[str, bool, str]:
        try:
            with graphql.engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
            return "database", True, "ok"
        except Exception as e:  # readiness reports any failure; it must not raise
            # A lost PostgreSQL is logged once by the engine's watcher (outage.watch_engine).
            return "database", False, f"unavailable: {type(e).__name__}"

    def check_redis() -> tuple[str, bool, str]:
        try:
            redis_client.ping()
        except RedisError as e:
            # Told once per outage by the process (outage.py), not once per probe.
            outage.REDIS.failed(e)
            return "redis", False, f"unavailable: {type(e).__name__}"
        outage.REDIS.recovered()
        return "redis", True, "ok"

    checks: list[Readiness] = [check_database, check_redis, *readiness]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        for collector in metrics_collectors:
            wrapper = _SCRAPE_ONLY.get(type(collector))
            if wrapper is None:
                wrapper = _SCRAPE_ONLY[type(collector)] = _ScrapeOnly(collector)
                REGISTRY.register(wrapper)
            wrapper.inner = collector
        try:
            yield
        finally:
            for collector in metrics_collectors:
                wrapper = _SCRAPE_ONLY.get(type(collector))
                if wrapper is not None and wrapper.inner is collector:
                    REGISTRY.unregister(wrapper)
                    del _SCRAPE_ONLY[type(collector)]
            graphql.executor.shutdown()
            redis_client.close()
            engine.dispose()

    async def healthz(request: Request) -> Response:
        # The service name tells `billing run`'s readiness check our API from another program
        # on the same port (devstack/supervisor.py HEALTHZ_SERVICE).
        return JSONResponse({"status": "ok", "service": "billing-api"})

    def run_checks() -> list[tuple[str, bool, str]]:
        return [check() for check in checks]

    async def readyz(request: Request) -> Response:
        # The checks block (a connect, a ping): off the event loop, so a hanging dependency
        # delays this answer only, never the requests served beside it.
        results = await run_in_threadpool(run_checks)
        ok = all(r[1] for r in results)
        body = {"status": "ok" if ok else "unavailable", "checks": {n: d for n, _, d in results}}
        return JSONResponse(body, status_code=200 if ok else 503)

    async def metrics(request: Request) -> Response:
        return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)

    app = Starlette(
        routes=[
            # The body limit guards /graphql only: /v1/usage takes batches of up to 16 MB and
            # counts its own bytes (gql/usage/http.py).
            Route(
                "/graphql",
                RequestBodyLimit(graphql, max_bytes=limits.max_body_bytes),
                methods=["GET", "POST"],
            ),
            Route("/healthz", healthz),
            Route("/readyz", readyz),
            Route("/metrics", metrics),
            *dashboard.routes(),
            *graphiql_static.routes(),
            *usage_http.routes(graphql.sessions),
            *routes,
        ],
        middleware=[Middleware(RequestContext, log_successes=settings.api_access_log == "all")],
        lifespan=lifespan,
    )
    app.state.engine = engine
    app.state.graphql = graphql
    return app
