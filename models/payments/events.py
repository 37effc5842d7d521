"""Stripe's webhook events as we read them: the envelope and the invoice inside, read once into
typed values, or the reason they cannot be read.

A signed event is from Stripe, so what cannot be read is still stored (once, by its id) with the
verdict `malformed` and answered 200: Stripe would otherwise retry it for three days, and an
operator would have nothing to look at. Only a body without an event id and type is refused
outright (`NotAnEvent`), since nothing can be stored once without the id.

Every field `models.payments.collection` acts on is read here and only here, so a value of the
wrong type (`"total": "abc"`, `"metadata": "x"`, `"created": true`) is a reason, never an
exception deep in a handler.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables

# Stripe did not exist before 2010, and nothing we bill runs past 2100: a timestamp outside is
# not a timestamp (1e15 is in the year 31,690,708; Python cannot even represent it).
_EARLIEST = int(datetime(2010, 1, 1, tzinfo=UTC).timestamp())
_LATEST = int(datetime(2100, 1, 1, tzinfo=UTC).timestamp())

# What a stored event's `verdict` can be (CHECK stripe_events_verdict_known, migration 0012).
APPLIED = "applied"  # understood and acted on (or already in that state here)
IGNORED = "ignored"  # understood, and deliberately not acted on (a type we do not handle...)
MALFORMED = "malformed"  # signed by Stripe, but a field we need is missing or of the wrong type
UNKNOWN_INVOICE = "unknown invoice"  # an invoice event for an invoice that is not ours
NOT_FOR_DRAFT = "not applicable to a DRAFT"  # our invoice is still a DRAFT here
VERDICTS = (APPLIED, IGNORED, MALFORMED, UNKNOWN_INVOICE, NOT_FOR_DRAFT)


class NotAnEvent(Exception):
    """The body is not a Stripe event at all (no id or type): nothing can be stored."""


class Malformed(Exception):
    """A field of a signed event cannot be read; the message names it."""


@dataclass(frozen=True)
class InvoiceObject:
    """The fields of a Stripe invoice (data.object) that we act on, read and typed."""

    id: str
    status: str | None
    total: int | None
    currency: str | None
    our_invoice_id: str | None  # metadata[invoice_id]: our public id, set by the sync
    attempt_count: int
    next_payment_attempt: datetime | None
    paid_at: datetime | None
    marked_uncollectible_at: datetime | None


@dataclass(frozen=True)
class Event:
    """A verified Stripe event: `malformed` says why it cannot be used (then `invoice` is None
    and `created` may be None)."""

    id: str
    type: str
    created: datetime | None
    object_id: str | None
    payload: Mapping[str, Any]
    invoice: InvoiceObject | None = None
    malformed: str | None = None


def storable(value: Any) -> bool:
    """PostgreSQL text and jsonb hold UTF-8 without NUL: a lone surrogate or a NUL anywhere in
    the event (keys included) cannot be stored."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return "\x00" not in value
    if isinstance(value, dict):
        return all(storable(k) and storable(v) for k, v in value.items())
    if isinstance(value, list):
        return all(storable(v) for v in value)
    return True


def _timestamp(value: Any, name: str) -> datetime:
    # bool is an int in Python: `true` must not become 1970-01-01T00:00:01.
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"{name} is not a Unix timestamp: {value!r:.60}")
    if not _EARLIEST <= value < _LATEST:
        raise Malformed(f"{name} is out of range: {value}")
    return datetime.fromtimestamp(value, UTC)


def _optional_timestamp(obj: Mapping[str, Any], key: str, name: str) -> datetime | None:
    value = obj.get(key)
    return None if value is None else _timestamp(value, name)


def _int(obj: Mapping[str, Any], key: str, *, default: int | None) -> int | None:
    value = obj.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int):
        raise Malformed(f"data.object.{key} is not an integer: {value!r:.60}")
    return value


def _text(obj: Mapping[str, Any], key: str, name: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise Malformed(f"{name} is not a string: {value!r:.60}")
    return value


def _mapping(obj: Mapping[str, Any], key: str, name: str) -> Mapping[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Malformed(f"{name} is not an object: {value!r:.60}")
    return value


def read_invoice(obj: Any) -> InvoiceObject:
    """data.object of an invoice event, typed; Malformed names the first field that is not."""
    if not isinstance(obj, dict):
        raise Malformed("data.object is not an object")
    if obj.get("object") != "invoice":
        raise Malformed(f"data.object is not an invoice but {obj.get('object')!r:.40}")
    remote_id = _text(obj, "id", "data.object.id")
    if not remote_id:
        raise Malformed("data.object.id is missing")
    metadata = _mapping(obj, "metadata", "data.object.metadata")
    transitions = _mapping(obj, "status_transitions", "data.object.status_transitions")
    attempts = _int(obj, "attempt_count", default=0)
    assert attempts is not None
    if attempts < 0:
        raise Malformed(f"data.object.attempt_count is negative: {attempts}")
    return InvoiceObject(
        id=remote_id,
        status=_text(obj, "status", "data.object.status"),
        total=_int(obj, "total", default=None),
        currency=_text(obj, "currency", "data.object.currency"),
        our_invoice_id=_text(metadata, "invoice_id", "data.object.metadata.invoice_id"),
        attempt_count=attempts,
        next_payment_attempt=_optional_timestamp(
            obj, "next_payment_attempt", "data.object.next_payment_attempt"
        ),
        paid_at=_optional_timestamp(
            transitions, "paid_at", "data.object.status_transitions.paid_at"
        ),
        marked_uncollectible_at=_optional_timestamp(
            transitions,
            "marked_uncollectible_at",
            "data.object.status_transitions.marked_uncollectible_at",
        ),
    )


def read(body: Any, *, handled: Sequence[str], now: datetime, skew: timedelta) -> Event:
    """The event in a verified body. NotAnEvent without an id and type (nothing to store);
    otherwise an Event, `malformed` when some field we need cannot be read. `created` later
    than `now + skew` is malformed: Stripe stamps events when it makes them, never ahead."""
    if not isinstance(body, dict) or body.get("object") != "event":
        raise NotAnEvent("the body is not a Stripe event")
    event_id, kind = body.get("id"), body.get("type")
    if not (isinstance(event_id, str) and event_id and isinstance(kind, str) and kind):
        raise NotAnEvent("the event has no id or type")
    if not storable(event_id) or not storable(kind) or len(event_id) > 255 or len(kind) > 255:
        raise NotAnEvent("the event's id or type is not a plain string")
    data = body.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    raw_id = obj.get("id") if isinstance(obj, dict) else None
    object_id = raw_id if isinstance(raw_id, str) and raw_id and storable(raw_id) else None
    payload: Mapping[str, Any] = body
    if not storable(body):  # kept as far as it can be: the id and type
        payload = {"id": event_id, "type": kind, "not_stored": "NUL or lone surrogate"}
    created: datetime | None = None
    try:
        created = _timestamp(body.get("created"), "created")
        if created > now + skew:
            raise Malformed(f"created is in the future: {created.isoformat()}")
        if payload is not body:
            raise Malformed("the event holds text PostgreSQL cannot store (NUL, lone surrogate)")
        if not isinstance(obj, dict):
            raise Malformed("data.object is missing")
        invoice = read_invoice(obj) if kind in handled else None
    except Malformed as e:
        return Event(event_id, kind, created, object_id, payload, malformed=str(e))
    return Event(event_id, kind, created, object_id, payload, invoice=invoice)


def listing(
    session: Session, *, verdict: str | None = None, limit: int = 50
) -> list[tables.StripeEvent]:
    """The latest stored events, newest first, of one verdict or all (uses
    ix_stripe_events_verdict_received_at)."""
    query = select(tables.StripeEvent)
    if verdict is not None:
        query = query.where(col(tables.StripeEvent.verdict) == verdict)
    rows = session.exec(
        query.order_by(sa.desc(col(tables.StripeEvent.received_at))).limit(limit)
    ).all()
    return list(rows)
