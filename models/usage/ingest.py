"""Usage ingestion: events in, aggregated into each organization's draft in the same transaction.

`record_usage` is the one domain function behind `POST /v1/usage` and `recordUsage`. Each event
stands alone: it is accepted, a duplicate, or rejected with a code, and a rejected one changes
nothing. Accepted events are aggregated in memory per line key (draft, product, app, region,
price version, service period), so a batch costs a fixed handful of statements whatever its
size, and a line's amount is recomputed from its summed quantity with the one rounding rule.

Locks are taken in one order by every ingest, each phase in key order, so concurrent ingests
never deadlock: event ids (organization, id) -> drafts (invoice id) -> lines (line key). The
draft's row lock also orders us with `finalize`, which locks the same row before it sums the
lines, so no event lands on an invoice being finalized.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from models import alerts
from models.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidValue,
    NegativeQuantity,
    OutOfWindow,
    TooManyItems,
    UnknownOrganization,
    UnknownProduct,
)
from models.money import QUANTITY_MAX, QUANTITY_PLACES, parse_decimal
from models.prices import PriceVersion, load_book
from models.usage import staging
from models.usage.staging import Aggregate, LineKey

# Stripe's meter events accept usage up to 35 days old and 5 minutes ahead; so do we.
WINDOW_BACK = timedelta(days=35)
WINDOW_AHEAD = timedelta(minutes=5)
MAX_EVENTS_PER_CALL = 10_000
MAX_ID = 200
MAX_TEXT = 100
MAX_METADATA_KEYS = 50
MAX_METADATA_BYTES = 4_096
FIELDS = {
    "id",
    "organizationSlug",
    "product",
    "quantity",
    "occurredAt",
    "app",
    "region",
    "metadata",
}


@dataclass(frozen=True)
class UsageEventInput:
    """One event as a client sent it; validated by `record_usage`, not by its maker."""

    id: Any
    organization_slug: Any
    product: Any
    quantity: Any
    occurred_at: Any  # datetime, or an ISO 8601 string with a time zone
    app: Any = None
    region: Any = None
    metadata: Any = None
    unknown_fields: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, raw: Any) -> UsageEventInput:
        """From the JSON object of POST /v1/usage (camelCase keys)."""
        if not isinstance(raw, Mapping):
            return cls(None, None, None, None, None, unknown_fields=("<not an object>",))
        return cls(
            id=raw.get("id"),
            organization_slug=raw.get("organizationSlug"),
            product=raw.get("product"),
            quantity=raw.get("quantity"),
            occurred_at=raw.get("occurredAt"),
            app=raw.get("app"),
            region=raw.get("region"),
            metadata=raw.get("metadata"),
            unknown_fields=tuple(sorted(str(k) for k in raw if k not in FIELDS)),
        )


@dataclass(frozen=True)
class Rejection:
    index: int
    id: str | None
    code: str
    message: str
    field: tuple[str, ...]


@dataclass
class IngestResult:
    accepted: int = 0
    duplicates: int = 0
    rejected: list[Rejection] = field(default_factory=list)


@dataclass(frozen=True)
class Organization:
    id: int
    currency: str


@dataclass(slots=True)
class Event:
    """A valid event; `digest` is the SHA-256 of its canonical payload, `metadata_json` the
    canonical JSON of its metadata (what is hashed and what is stored). Priced by record_usage."""

    index: int
    organization_id: int
    currency: str
    event_id: str
    product: str
    app: str | None
    region: str | None
    quantity: Decimal
    occurred_at: datetime
    period_start: date
    metadata_json: str
    digest: bytes
    price: PriceVersion | None = None


def month_start(at: datetime) -> date:
    utc = at.astimezone(UTC)
    return date(utc.year, utc.month, 1)


def _text(value: Any, name: str, *, required: bool, limit: int = MAX_TEXT) -> str | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        if required:
            raise InvalidValue(f"{name} is required", field=(name,))
        return None
    if not isinstance(value, str) or "\x00" in value or len(value) > limit:
        raise InvalidValue(f"{name} must be a string of at most {limit} characters", field=(name,))
    return value.strip()


def _quantity(raw: Any) -> Decimal:
    # Floats are binary approximations: a quantity is a string or an exact (integer or decimal)
    # number; the HTTP layer parses JSON numbers as Decimal, so "1.5" and 1.5 both arrive exact.
    if isinstance(raw, bool) or not isinstance(raw, str | int | Decimal):
        raise InvalidValue('quantity must be a decimal number, such as "12.5"', field=("quantity",))
    q = parse_decimal(raw, field="quantity", places=QUANTITY_PLACES, maximum=QUANTITY_MAX)
    if q < 0:
        raise NegativeQuantity("quantity cannot be negative", field=("quantity",))
    return q


def _occurred_at(raw: Any, now: datetime) -> datetime:
    if isinstance(raw, str):
        try:
            raw = datetime.fromisoformat(raw.strip())
        except ValueError:
            raise InvalidValue(
                "occurredAt must be an ISO 8601 time such as 2026-03-05T12:00:00Z",
                field=("occurredAt",),
            ) from None
    if not isinstance(raw, datetime) or raw.tzinfo is None:
        raise InvalidValue("occurredAt needs a date, a time and a time zone", field=("occurredAt",))
    at = raw.astimezone(UTC)
    if not now - WINDOW_BACK <= at <= now + WINDOW_AHEAD:
        raise OutOfWindow(
            "occurredAt must be at most 35 days in the past and 5 minutes in the future",
            field=("occurredAt",),
        )
    return at


def _metadata(raw: Any) -> str:
    """The metadata's canonical JSON (sorted keys, no spaces): hashed and stored as is."""
    if raw is None:
        return "{}"
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise InvalidValue("metadata must be a JSON object", field=("metadata",))
    canonical = _canonical(raw)
    if len(raw) > MAX_METADATA_KEYS or len(canonical) > MAX_METADATA_BYTES:
        raise InvalidValue(
            f"metadata holds at most {MAX_METADATA_KEYS} keys and {MAX_METADATA_BYTES} bytes",
            field=("metadata",),
        )
    return canonical


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def _json_text(value: str | None) -> str:
    return "null" if value is None else encode_basestring_ascii(value)


def _digest(
    product: str, quantity: str, at: str, app: str | None, region: str | None, metadata: str
) -> bytes:
    """SHA-256 of `_canonical([product, quantity, at, app, region, metadata])`, byte for byte
    (the stored hashes of events already received must keep matching their resends), built
    with the C string encoder json.dumps itself uses instead of a json.dumps per event."""
    text = (
        f"[{encode_basestring_ascii(product)},{encode_basestring_ascii(quantity)},"
        f"{encode_basestring_ascii(at)},{_json_text(app)},{_json_text(region)},{metadata}]"
    )
    return hashlib.sha256(text.encode()).digest()


def _parse(
    index: int, raw: UsageEventInput, orgs: Mapping[str, Organization], now: datetime
) -> Event:
    if raw.unknown_fields:
        raise InvalidValue(f"unknown fields: {', '.join(raw.unknown_fields)}")
    event_id = _text(raw.id, "id", required=True, limit=MAX_ID)
    slug = _text(raw.organization_slug, "organizationSlug", required=True)
    org = orgs.get(slug or "")
    if org is None:
        raise UnknownOrganization(f"no organization {slug!r}", field=("organizationSlug",))
    product = _text(raw.product, "product", required=True)
    quantity = _quantity(raw.quantity)
    occurred_at = _occurred_at(raw.occurred_at, now)
    app = _text(raw.app, "app", required=False)
    region = _text(raw.region, "region", required=False)
    metadata = _metadata(raw.metadata)
    assert event_id is not None and product is not None
    digest = _digest(
        product, format(quantity.normalize(), "f"), occurred_at.isoformat(), app, region, metadata
    )
    return Event(
        index, org.id, org.currency, event_id, product, app, region, quantity, occurred_at,
        date(occurred_at.year, occurred_at.month, 1), metadata, digest,
    )  # fmt: skip


def _organizations(session: Session, events: Sequence[UsageEventInput]) -> dict[str, Organization]:
    slugs = sorted({e.organization_slug for e in events if isinstance(e.organization_slug, str)})
    rows = session.execute(
        sa.text("SELECT slug, id, default_currency FROM organizations WHERE slug = ANY(:s)"),
        {"s": slugs},
    ).all()
    return {r.slug: Organization(r.id, r.default_currency.strip()) for r in rows}


def record_usage(
    session: Session, events: Sequence[UsageEventInput], *, now: datetime
) -> IngestResult:
    """Record a batch of usage events and add each accepted one to its organization's draft.

    Writes usage_event_ids and usage_events rows, creates drafts (and their usage_drafts rows)
    on an organization's first event of a period, upserts the drafts' usage lines and updates
    their totals. A rejected event (its index, id, code and message in the result) writes
    nothing. Raises TooManyItems for more than MAX_EVENTS_PER_CALL events. Caller commits.
    """
    if len(events) > MAX_EVENTS_PER_CALL:
        raise TooManyItems(f"at most {MAX_EVENTS_PER_CALL:,} events per call", field=("events",))
    result = IngestResult()

    def reject(index: int, error: DomainError) -> None:
        raw_id = events[index].id
        result.rejected.append(
            Rejection(
                index, raw_id if isinstance(raw_id, str) else None, error.code, error.message,
                error.field,
            )
        )  # fmt: skip

    orgs = _organizations(session, events)
    parsed: list[Event] = []
    for i, raw in enumerate(events):
        try:
            parsed.append(_parse(i, raw, orgs, now))
        except DomainError as error:
            reject(i, error)
    book = load_book(
        session,
        products=[e.product for e in parsed],
        currencies=[e.currency for e in parsed],
        organization_ids=[e.organization_id for e in parsed],
        until=now + WINDOW_AHEAD,
    )
    # Duplicates inside the batch: the first valid occurrence of an id stands for all of them.
    first: dict[tuple[int, str], Event] = {}
    fresh: list[Event] = []
    for e in parsed:
        price = book.lookup(e.organization_id, e.product, e.currency, e.occurred_at)
        if price is None:
            reject(
                e.index,
                UnknownProduct(
                    f"no {e.currency} price for product {e.product!r} at {e.occurred_at:%Y-%m-%dT%H:%M:%SZ}",
                    field=("product",),
                ),
            )
            continue
        id_key = (e.organization_id, e.event_id)
        seen = first.get(id_key)
        if seen is None:
            first[id_key] = e
            e.price = price
            fresh.append(e)
        elif seen.digest == e.digest:
            result.duplicates += 1
        else:
            reject(e.index, _conflict(e))
    accepted, batch, known = _claim_ids(session, fresh, now=now, result=result, reject=reject)
    if accepted:
        placed, closed = staging.place(
            session,
            {(e.organization_id, e.period_start): e.currency for e in accepted},
            now=now,
        )
        for e in accepted:
            if (e.organization_id, e.period_start) in closed:
                reject(e.index, closed[(e.organization_id, e.period_start)])
        if closed:
            _release_ids(
                session, [e for e in accepted if (e.organization_id, e.period_start) in closed]
            )
        accepted = [e for e in accepted if (e.organization_id, e.period_start) not in closed]
        _insert_events(session, batch, known, placed, now=now)
        totals: dict[LineKey, Aggregate] = {}
        for e in accepted:
            assert e.price is not None
            invoice_id = placed[(e.organization_id, e.period_start)]
            key = LineKey(invoice_id, e.product, e.app, e.region, e.price.id, e.period_start)
            if key in totals:
                totals[key].add(e.quantity, e.occurred_at)
            else:
                totals[key] = Aggregate(e.quantity, e.occurred_at, e.occurred_at)
        prices = {e.price.id: e.price for e in accepted if e.price is not None}
        staging.add_quantities(session, totals, prices, now=now)
        # Under the drafts' row locks (`place`), so the totals read are the committed ones.
        alerts.evaluate(session, sorted({k.invoice_id for k in totals}), now=now)
    result.accepted = len(accepted)
    result.rejected.sort(key=lambda r: r.index)
    return result


def _conflict(e: Event) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"event id {e.event_id!r} was already used with a different payload", field=("id",)
    )


def _claim_ids(
    session: Session,
    events: list[Event],
    *,
    now: datetime,
    result: IngestResult,
    reject: Any,
) -> tuple[list[Event], int, list[int]]:
    """Stage the batch, then insert its event ids, in key order; the ones already known are
    duplicates or conflicts. Returns the events whose ids are new, the staging batch, and the
    indexes of the staged events that are not new (to leave out when inserting the events).

    ON CONFLICT DO NOTHING waits for a concurrent transaction that inserted the same id and
    sees its outcome, so two requests carrying the same event count it once. The stored hashes
    of known ids are read by a second statement: its fresh snapshot sees a concurrent
    transaction's ids that the insert waited for. (The new ids are matched up in Python: the
    staging table has no statistics, and a join with it is planned as a nested loop.)
    """
    if not events:
        return [], 0, []
    batch = staging.stage(
        session,
        "usage_stage",
        (
            (
                e.index,
                e.organization_id,
                e.event_id,
                e.digest,
                e.occurred_at,
                e.period_start,
                e.product,
                e.app,
                e.region,
                e.quantity,
                e.price.id if e.price else None,
                e.metadata_json,
            )
            for e in events
        ),
    )
    new = {
        (r.organization_id, r.event_id)
        for r in session.execute(
            sa.text(
                "INSERT INTO usage_event_ids (organization_id, event_id, payload_sha256, "
                "occurred_at, received_at) SELECT o, i, d, t, :now FROM usage_stage "
                "WHERE batch = :b ORDER BY o, i ON CONFLICT DO NOTHING "
                "RETURNING organization_id, event_id"
            ),
            {"b": batch, "now": now},
        )
    }
    known_indexes = {e.index for e in events if (e.organization_id, e.event_id) not in new}
    known = [e for e in events if e.index in known_indexes]
    if known:
        stored = {
            (r.organization_id, r.event_id): bytes(r.payload_sha256)
            for r in session.execute(
                sa.text(
                    "SELECT organization_id, event_id, payload_sha256 FROM usage_event_ids "
                    "WHERE (organization_id, event_id) IN (SELECT * FROM unnest("
                    "CAST(:o AS bigint[]), CAST(:i AS text[])))"
                ),
                {"o": [e.organization_id for e in known], "i": [e.event_id for e in known]},
            )
        }
        for e in known:
            if stored.get((e.organization_id, e.event_id)) == e.digest:
                result.duplicates += 1
            else:
                reject(e.index, _conflict(e))
    fresh = [e for e in events if e.index not in known_indexes]
    return fresh, batch, sorted(known_indexes)


def _release_ids(session: Session, events: list[Event]) -> None:
    """Forget ids claimed by this transaction for events that were refused after all."""
    session.execute(
        sa.text(
            "DELETE FROM usage_event_ids WHERE (organization_id, event_id) IN "
            "(SELECT * FROM unnest(CAST(:o AS bigint[]), CAST(:i AS text[])))"
        ),
        {"o": [e.organization_id for e in events], "i": [e.event_id for e in events]},
    )


def _insert_events(
    session: Session,
    batch: int,
    skip: list[int],
    placed: Mapping[tuple[int, date], int],
    *,
    now: datetime,
) -> None:
    """One INSERT ... SELECT of the staged events, but those at the indexes in `skip` and those
    whose (organization, period) has no draft in `placed` (refused); rows route to their month's
    partition."""
    if not placed:
        return
    keys = sorted(placed)
    session.execute(
        sa.text(
            "INSERT INTO usage_events (organization_id, event_id, occurred_at, period_start, "
            "product, app, region, quantity, price_id, invoice_id, metadata, received_at) "
            "SELECT s.o, s.i, s.t, s.p, s.pr, s.a, s.r, s.q, s.pid, m.inv, s.m::jsonb, :now "
            "FROM usage_stage s JOIN unnest(CAST(:o AS bigint[]), CAST(:p AS date[]), "
            "CAST(:inv AS bigint[])) AS m(o, p, inv) ON m.o = s.o AND m.p = s.p "
            "WHERE s.batch = :b AND s.n <> ALL(CAST(:skip AS integer[]))"
        ),
        {
            "b": batch,
            "skip": skip,
            "o": [k[0] for k in keys],
            "p": [k[1] for k in keys],
            "inv": [placed[k] for k in keys],
            "now": now,
        },
    )


PARTITION_LOCK_NAMESPACE = 0x75736167  # with key 0: one creator of partitions at a time


def ensure_partitions(session: Session, *, now: datetime, months_ahead: int = 1) -> list[str]:
    """Create the usage_events partitions of the month of `now` and the next `months_ahead`
    months, unless they exist (see migration 0002 for why ahead and not in the ingest).
    Returns their names. Caller commits."""
    session.execute(
        sa.text("SELECT pg_advisory_xact_lock(:ns, 0)"), {"ns": PARTITION_LOCK_NAMESPACE}
    )
    month = month_start(now)
    names: list[str] = []
    for _ in range(months_ahead + 1):
        names.append(
            str(
                session.execute(
                    sa.text("SELECT usage_events_ensure_partition(:m)"), {"m": month}
                ).scalar_one()
            )
        )
        month = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    return names
