"""`/_mock/…`: inspect, reset and configure the mock. Never faulted, never counted."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from . import errors, shapes
from .endpoint import publish_events
from .settings import parse_settings
from .state import MockState
from .webhooks import WebhookSettings


def _bad_request(message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": "invalid_request_error", "message": message}}, 400)


def admin_routes(state: MockState, endpoints: Sequence[str]) -> list[Route]:
    def faults_view() -> JSONResponse:
        return JSONResponse(
            {
                "rules": state.faults.describe(),
                "idempotency_ttl_seconds": state.idempotency.ttl_seconds,
                "search_lag_seconds": state.store.search_lag_seconds,
                "rate_limit_per_second": state.rate_limit.per_second,
                "webhooks": state.webhooks.settings.describe(),
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
        if settings.rate_limit_given:
            state.rate_limit.configure(settings.rate_limit_per_second)
        if settings.unsupported_currencies is not None:
            state.store.unsupported_currencies = set(settings.unsupported_currencies)
        if settings.webhooks:
            current = state.webhooks.settings
            w = settings.webhooks
            state.webhooks.configure(
                WebhookSettings(
                    url=w.get("webhook_url", current.url),
                    secrets=list(w.get("webhook_secrets", current.secrets)),
                    duplicate_probability=float(
                        w.get("webhook_duplicate_probability", current.duplicate_probability)
                    ),
                    max_delay_seconds=float(
                        w.get("webhook_max_delay_seconds", current.max_delay_seconds)
                    ),
                    seed=settings.seed if settings.reseed else current.seed,
                )
            )
        return faults_view()

    async def clear_faults(request: Request) -> JSONResponse:
        state.faults.replace([])
        return faults_view()

    async def list_credit_notes(request: Request) -> JSONResponse:
        store = state.store
        with store.lock:
            data = [shapes.credit_note(n) for n in store.credit_notes.values()]
        return JSONResponse({"data": data})

    async def list_invoices(request: Request) -> JSONResponse:
        store = state.store
        with store.lock:
            data = [
                shapes.invoice(
                    inv, store.customers.get(inv.customer), all_lines=True, total_count=True
                )
                for inv in store.all_invoices()
            ]
        return JSONResponse({"data": data})

    async def list_customers(request: Request) -> JSONResponse:
        store = state.store
        with store.lock:
            data = [shapes.customer(c) for c in store.all_customers()]
        return JSONResponse({"data": data})

    async def pay_invoice(request: Request) -> JSONResponse:
        """Drive a payment as the customer would: `{"fail": true}` is a declined card (an
        `invoice.payment_failed` event), otherwise the invoice is paid (`invoice.paid`)."""
        try:
            payload: Any = json.loads(await request.body() or b"{}")
        except ValueError:
            return _bad_request("the body must be JSON")
        fail = isinstance(payload, dict) and payload.get("fail") is True
        store = state.store
        with store.lock:
            try:
                inv = store.pay(request.path_params["id"], paid_out_of_band=False, decline=fail)
                body, status = shapes.invoice(inv, store.customers.get(inv.customer)), 200
            except errors.StripeError as e:
                body, status = e.body(), e.status
            finally:
                publish_events(state, store, request_id=None, key=None)
        return JSONResponse(body, status)

    async def flush_webhooks(request: Request) -> JSONResponse:
        """Deliver every held event now and answer once all are delivered (or given up), or
        after `?timeout=` seconds (30 by default)."""
        try:
            timeout = float(request.query_params.get("timeout", "30"))
        except ValueError:
            return _bad_request("timeout must be a number of seconds")
        done = await asyncio.to_thread(state.webhooks.flush, timeout)
        return JSONResponse({"flushed": done, **state.webhooks.stats()})

    async def webhook_stats(request: Request) -> JSONResponse:
        return JSONResponse(state.webhooks.stats())

    async def stats(request: Request) -> JSONResponse:
        return JSONResponse({**state.stats.snapshot(), "peak_in_one_second": state.rate_limit.peak})

    async def reset(request: Request) -> JSONResponse:
        state.reset()
        return JSONResponse({"reset": True})

    return [
        Route("/_mock/faults", get_faults, methods=["GET"]),
        Route("/_mock/faults", set_faults, methods=["POST"]),
        Route("/_mock/faults", clear_faults, methods=["DELETE"]),
        Route("/_mock/invoices", list_invoices, methods=["GET"]),
        Route("/_mock/customers", list_customers, methods=["GET"]),
        Route("/_mock/credit_notes", list_credit_notes, methods=["GET"]),
        Route("/_mock/invoices/{id}/pay", pay_invoice, methods=["POST"]),
        Route("/_mock/webhooks/flush", flush_webhooks, methods=["POST"]),
        Route("/_mock/webhooks", webhook_stats, methods=["GET"]),
        Route("/_mock/stats", stats, methods=["GET"]),
        Route("/_mock/reset", reset, methods=["POST"]),
    ]
