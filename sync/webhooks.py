"""`POST /webhooks/stripe`: Stripe's events in, verified with the SDK's signature check.

`Stripe-Signature: t=<unix>,v1=<hex>...`: an HMAC-SHA256 of `t.payload` under the endpoint's
secret, checked by `stripe.WebhookSignature.verify_header` with a 5-minute tolerance (a
captured request cannot be replayed later). During a secret rotation Stripe signs with the old
and the new secret at once (several `v1`), and we may hold both: `STRIPE_WEBHOOK_SECRETS` is a
comma-separated list, and an event verified by any of them is accepted.

A bad signature, a stale timestamp or a malformed body answers 400 and writes nothing (Stripe
retries with backoff for days, so a fixed secret catches up). A verified event is stored once
by its id and applied (`models.payments.collection.handle`) in one transaction, then answered 200; a
duplicate answers 200 too, having changed nothing.

This module is wired into the API by the composition root (`bootstrap.py`), so that `gql` imports
neither `sync` nor the Stripe SDK.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from models.db import transaction
from models.payments import collection

log = logging.getLogger("billing.webhooks")

PATH = "/webhooks/stripe"
TOLERANCE_SECONDS = 300
MAX_BODY = 1 << 20  # Stripe's events are a few kB; anything near a megabyte is not one


class Refused(Exception):
    """The request is not a verified Stripe event; the message says why (never the secret)."""


def parse_secrets(raw: str | None) -> list[str]:
    return [s.strip() for s in (raw or "").split(",") if s.strip()]


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    tolerance: int = TOLERANCE_SECONDS,
) -> collection.Event:
    """The event, if some secret's signature matches and the timestamp is fresh; else Refused."""
    if not secrets:
        raise Refused("no webhook secret is configured (STRIPE_WEBHOOK_SECRETS)")
    last: str = "no secret matched"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
        except stripe.SignatureVerificationError as e:
            last = str(e).split(". ")[0]
            continue
        return _parse(payload)
    raise Refused(f"signature check failed: {last}")


def _parse(payload: bytes) -> collection.Event:
    try:
        body: Any = json.loads(payload)
    except (ValueError, UnicodeDecodeError):
        raise Refused("the body is not JSON") from None
    if not isinstance(body, dict) or body.get("object") != "event":
        raise Refused("the body is not a Stripe event")
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    event_id, kind, created = body.get("id"), body.get("type"), body.get("created")
    if not (
        isinstance(event_id, str)
        and event_id
        and isinstance(kind, str)
        and isinstance(created, int)
        and isinstance(obj, dict)
    ):
        raise Refused("the event lacks id, type, created or data.object")
    return collection.Event(
        id=event_id,
        type=kind,
        created=datetime.fromtimestamp(created, UTC),
        object=obj,
        payload=body,
    )


def _store_and_apply(sessions: sessionmaker[Session], event: collection.Event) -> str:
    with transaction(sessions) as s:
        return collection.handle(s, event, now=datetime.now(UTC))


def route(sessions: sessionmaker[Session], secrets: Sequence[str]) -> Route:
    async def receive(request: Request) -> JSONResponse:
        payload = await request.body()
        if len(payload) > MAX_BODY:
            return JSONResponse({"error": "body too large"}, status_code=400)
        try:
            event = verify(payload, request.headers.get("stripe-signature"), secrets)
        except Refused as e:
            log.warning("webhook refused: %s", e)
            return JSONResponse({"error": str(e)}, status_code=400)
        outcome = await run_in_threadpool(_store_and_apply, sessions, event)
        log.info("webhook", extra={"event_id": event.id, "type": event.type, "outcome": outcome})
        return JSONResponse({"received": True, "outcome": outcome})

    return Route(PATH, receive, methods=["POST"])
