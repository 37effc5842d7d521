"""The Starlette app: API routes from `handlers`, admin routes, Stripe-shaped 404s."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import Message, Receive, Scope, Send

from . import errors
from .admin import admin_routes
from .drop import Connections
from .endpoint import REQUEST_ID, ApiEndpoint, encode
from .faults import parse_rules
from .handlers import ENDPOINTS, OPERATIONS
from .ids import new_request_id
from .pages import PUBLIC_BASE, page_routes
from .state import Defaults, MockState
from .stats import UNMATCHED
from .webhooks import WebhookSettings


class MockStripe(Starlette):
    """Starlette, plus a `Request-Id` on every response.

    `connections` is where `server.MockServer`'s front registers the client sockets it owns,
    so that endpoints can lose a response (`drop.py`).
    """

    mock: MockState
    connections: Connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await super().__call__(scope, receive, send)
        request_id = new_request_id()
        scope[REQUEST_ID] = request_id
        # Absolute links in answers (hosted_invoice_url, invoice_pdf) name the address asked.
        PUBLIC_BASE.set(str(Request(scope).base_url).rstrip("/"))

        async def send_with_request_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Request-Id", request_id)
            await send(message)

        await super().__call__(scope, receive, send_with_request_id)


def create_app(
    *,
    rules: list[dict[str, Any]] | None = None,
    idempotency_ttl_seconds: float = 86400,
    seed: int | None = None,
    search_lag_seconds: float = 0.0,
    state_path: Path | str | None = None,
    webhook_url: str | None = None,
    webhook_secrets: list[str] | None = None,
    webhook_duplicate_probability: float = 0.0,
    webhook_max_delay_seconds: float = 0.0,
    rate_limit_per_second: float | None = None,
) -> MockStripe:
    """Build a mock Stripe; `rules` use the `POST /_mock/faults` format and raise ValueError.

    `search_lag_seconds` hides new objects from `/search` for that long, as Stripe's search
    index lags behind writes (retrieve and list see them at once). `state_path`: a journal
    file that keeps objects across restarts (None: memory only). `webhook_*`: where events
    are posted, signed with which secrets, and how often duplicated or held back.
    `rate_limit_per_second`: Stripe's own limit, API requests in any sliding second past which
    the mock answers 429 `rate_limit` (None: no limit; `ratelimit.py`).
    """
    state = MockState.create(
        Defaults(
            idempotency_ttl_seconds=idempotency_ttl_seconds,
            seed=seed,
            search_lag_seconds=search_lag_seconds,
            state_path=Path(state_path) if state_path else None,
            rate_limit_per_second=rate_limit_per_second,
            webhooks=WebhookSettings(
                url=webhook_url,
                secrets=list(webhook_secrets or []),
                duplicate_probability=webhook_duplicate_probability,
                max_delay_seconds=webhook_max_delay_seconds,
                seed=seed,
            ),
        ),
        parse_rules(rules or [], ENDPOINTS),
    )
    connections = Connections()
    routes: list[BaseRoute] = [
        Route(op.path, ApiEndpoint(op, state, connections), methods=[op.method])
        for op in OPERATIONS
    ]
    routes += admin_routes(state, ENDPOINTS)
    routes += page_routes(state)

    async def unrecognized(request: Request, exc: Exception) -> Response:
        # Starlette answers unknown paths (404) and unsupported methods (405) here.
        if not request.url.path.startswith("/_mock/"):
            state.stats.record(UNMATCHED, 404)
        error = errors.unrecognized_url(request.method, request.url.path)
        return Response(encode(error.body()), 404, media_type="application/json")

    app = MockStripe(routes=routes, exception_handlers={HTTPException: unrecognized})
    app.mock = state
    app.connections = connections
    return app
