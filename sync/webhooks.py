"""`POST /webhooks/stripe`: Stripe's events in, verified with the SDK's signature check.

`Stripe-Signature: t=<unix>,v1=<hex>...`: an HMAC-SHA256 of `t.payload` under the endpoint's
secret, checked by `stripe.WebhookSignature.verify_header` with a 5-minute tolerance both ways
(the SDK checks only the past: a captured request cannot be replayed later; we add the future,
so a request signed ahead cannot be kept and replayed for days). During a secret rotation
Stripe signs with the old and the new secret at once (several `v1`), and we may hold both:
`STRIPE_WEBHOOK_SECRETS` is a comma-separated list, and an event verified by any of them is
accepted.

What is answered (never a 500 for anything a client sends; JSON `{code, message}` on errors):
- 413 BODY_TOO_LARGE past MAX_BODY bytes: from Content-Length before reading, else as soon as
  the bytes read pass it (a chunked body is never read whole).
- 400 SIGNATURE_CHECK_FAILED: no or bad signature, a timestamp outside the tolerance, a body
  that is not UTF-8 (the signature is over text). Stripe retries, so a fixed secret catches up.
- 400 NOT_AN_EVENT: signed, but not JSON or without an event id and type: nothing to store once.
- 200 with `verdict` and `outcome`: every signed event with an id, stored once by that id
  (`models.payments.collection.handle`), including those we cannot use (`malformed`, `unknown
  invoice`, `not applicable to a DRAFT`): answering 200 stops Stripe's three days of retries,
  and `billing webhooks list --outcome malformed` shows them. A duplicate answers 200 too,
  having changed nothing.
- 503 DATABASE_UNAVAILABLE with Retry-After when the event cannot be stored now: Stripe retries.

This module is wired into the API by the composition root (`bootstrap.py`), so that `gql` imports
neither `sync` nor the Stripe SDK.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy.exc
import stripe
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from models.db import transaction
from models.payments import collection, events

log = logging.getLogger("billing.webhooks")

PATH = "/webhooks/stripe"
TOLERANCE_SECONDS = 300
MAX_BODY = 1 << 20  # Stripe's events are a few kB; anything near a megabyte is not one
RETRY_AFTER_SECONDS = 30


class Refused(Exception):
    """The request is not a verified Stripe event; the message says why (never the secret)."""

    def __init__(self, message: str, code: str = "SIGNATURE_CHECK_FAILED") -> None:
        super().__init__(message)
        self.code = code


def parse_secrets(raw: str | None) -> list[str]:
    return [s.strip() for s in (raw or "").split(",") if s.strip()]


def _signed_at(header: str) -> int:
    """`t=` of a header the SDK has verified (so it is there and an integer)."""
    return int(next(p[2:] for p in header.split(",") if p.startswith("t=")))


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> events.Event:
    """The event, if some secret's signature matches and the timestamp is within `tolerance`
    of `now` either way; else Refused."""
    if not secrets:
        raise Refused("no webhook secret is configured (STRIPE_WEBHOOK_SECRETS)")
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        raise Refused("signature check failed: the body is not UTF-8 text") from None
    now = time.time() if now is None else now
    last: str = "no secret matched"
    for secret in secrets:
        try:
            stripe.WebhookSignature.verify_header(text, header, secret, tolerance)
        except (stripe.SignatureVerificationError, ValueError) as e:
            last = str(e).split(". ")[0]
            continue
        assert header is not None  # verify_header refuses a missing one
        if _signed_at(header) > now + tolerance:
            raise Refused(f"signature check failed: signed in the future (t={_signed_at(header)})")
        return _parse(text, now=now, tolerance=tolerance)
    raise Refused(f"signature check failed: {last}")


def _parse(text: str, *, now: float, tolerance: int) -> events.Event:
    try:
        body: Any = json.loads(text)
    except (ValueError, RecursionError):
        raise Refused("the body is not JSON", "NOT_AN_EVENT") from None
    try:
        return events.read(
            body,
            handled=collection.HANDLED,
            now=datetime.fromtimestamp(now, UTC),
            skew=timedelta(seconds=tolerance),
        )
    except events.NotAnEvent as e:
        raise Refused(str(e), "NOT_AN_EVENT") from None


def _store_and_apply(sessions: sessionmaker[Session], event: events.Event) -> collection.Handled:
    with transaction(sessions) as s:
        return collection.handle(s, event, now=datetime.now(UTC))


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status, headers=headers)


async def _read_body(request: Request) -> bytes | None:
    """The body, or None as soon as it is known to be over MAX_BODY (declared or read)."""
    length = request.headers.get("content-length")
    if length is not None and length.strip().isdigit() and int(length) > MAX_BODY:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


def route(sessions: sessionmaker[Session], secrets: Sequence[str]) -> Route:
    async def receive(request: Request) -> JSONResponse:
        payload = await _read_body(request)
        if payload is None:
            log.warning("webhook refused: body over %d bytes", MAX_BODY)
            return _error(413, "BODY_TOO_LARGE", f"the body is over {MAX_BODY:,} bytes")
        try:
            event = verify(payload, request.headers.get("stripe-signature"), secrets)
        except Refused as e:
            log.warning("webhook refused: %s", e)
            return _error(400, e.code, str(e))
        try:
            handled = await run_in_threadpool(_store_and_apply, sessions, event)
        except (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError) as e:
            # The database is away: Stripe retries a non-2xx with backoff, so nothing is lost.
            log.warning(
                "webhook %s not stored, database unavailable: %s", event.id, type(e).__name__
            )
            return _error(
                503,
                "DATABASE_UNAVAILABLE",
                "the event could not be stored now; Stripe will retry",
                **{"Retry-After": str(RETRY_AFTER_SECONDS)},
            )
        log.info(
            "webhook",
            extra={
                "event_id": event.id,
                "type": event.type,
                "verdict": handled.verdict,
                "outcome": handled.outcome,
            },
        )
        return JSONResponse(
            {"received": True, "verdict": handled.verdict, "outcome": handled.outcome}
        )

    return Route(PATH, receive, methods=["POST"])
