"""`/_mock/…`: inspect, reset and configure the mock. Never faulted, never counted."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import shapes
from .settings import parse_settings
from .state import MockState


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": "invalid_request_error", "message": message}}, 400)


def admin_routes(state: MockState, endpoints: Sequence[str]) -> list[Route]:
    def faults_view() -> JSONResponse:
        return JSONResponse(
            {
                "rules": state.faults.describe(),
                "idempotency_ttl_seconds": state.idempotency.ttl_seconds,
                "search_lag_seconds": state.store.search_lag_seconds,
                "endpoints": list(endpoints),
            }
        )

    async def get_faults(request: Request) -> JSONResponse:
        return faults_view()

    async def set_faults(request: Request) -> JSONResponse:
        """Replace the rules (if `rules` is given) and optionally the TTL, seed and lag."""
        try:
            payload: Any = json.loads(await request.body() or b"{}")
            settings = parse_settings(payload, endpoints)
        except ValueError as e:
            return _bad_request(f"Invalid fault settings: {e}")
        if settings.rules is not None:
            state.faults.replace(settings.rules)
        if settings.reseed:
            state.faults.reseed(settings.seed)
        if settings.idempotency_ttl_seconds is not None:
            state.idempotency.ttl_seconds = settings.idempotency_ttl_seconds
        if settings.search_lag_seconds is not None:
            state.store.search_lag_seconds = settings.search_lag_seconds
        return faults_view()

    async def clear_faults(request: Request) -> JSONResponse:
        state.faults.replace([])
        return faults_view()

    async def list_invoices(request: Request) -> JSONResponse:
        store = state.store
        with store.lock:
            data = [
                shapes.invoice(inv, store.customers.get(inv.customer), all_lines=True)
                for inv in store.all_invoices()
            ]
        return JSONResponse({"data": data})

    async def list_customers(request: Request) -> JSONResponse:
        store = state.store
        with store.lock:
            data = [shapes.customer(c) for c in store.all_customers()]
        return JSONResponse({"data": data})

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse(state.stats.snapshot())

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"reset": True})

    return [
        Route("/_mock/faults", get_faults, methods=["GET"]),
        Route("/_mock/faults", set_faults, methods=["POST"]),
        Route("/_mock/faults", clear_faults, methods=["DELETE"]),
        Route("/_mock/invoices", list_invoices, methods=["GET"]),
        Route("/_mock/customers", list_customers, methods=["GET"]),
        Route("/_mock/stats", stats, methods=["GET"]),
        Route("/_mock/reset", reset, methods=["POST"]),
    ]
