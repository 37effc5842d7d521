"""Usage ingestion: events in, aggregated into each organization's draft in the same transaction.

`record_usage` is the one domain function behind `POST /v1/usage` and `recordUsage`. Each event
stands alone: it is accepted, a duplicate, or rejected with a code, and a rejected one changes
nothing. Accepted events are aggregated in memory per line key (draft, product, app, region,
price version, service period), so a batch costs a fixed handful of statements whatever its
size, and a line's amount is recomputed from its summed quantity with the one rounding rule.

No event can make another fail. Every foreseeable bad value is refused per event, with a
code, before anything is written: INVALID_VALUE for text that cannot be stored or that has
surrounding whitespace (models/text.py), for NaN, Infinity, NUL or a lone surrogate anywhere
in the event, metadata included; VALUE_OUT_OF_RANGE for a quantity past NUMERIC(20,9), or for
an event that would take its line's summed quantity past that column or the line's amount past
the money limit (events of a line are admitted in request order while they fit, counting what
the line already holds). The writes of a batch run in one savepoint; a refusal that can only
be known while writing (a period finalized under us, a line's stored sum) rolls it back and
the batch is written again without the refused events. An unforeseeable failure of the
database (a trigger, a constraint: anything but a lost connection) rolls back the savepoint and
the batch is written again one (organization, period) group at a time, each in its own
savepoint: the events of a group that still fails are refused with NOT_RECORDED and the
request id, and every other group counts.

What the client sent is what is stored: ids, products, apps and regions are compared and stored
exactly (surrounding whitespace is refused, never stripped), and metadata keeps its JSON types
and its numbers' exact decimal text (PostgreSQL jsonb keeps a number's scale, "1.50" stays
1.50; an exponent such as 1e2 is stored as the equal 100).

Locks are taken in one order by every ingest, each phase in key order, so concurrent ingests
never deadlock: event ids (organization, id) -> drafts (invoice id) -> lines (line key). The
draft's row lock also orders us with `finalize`, which locks the same row before it sums the
lines, so no event lands on an invoice being finalized.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from json.encoder import encode_basestring_ascii
from typing import Any

import sqlalchemy as sa
import sqlalchemy.exc
from sqlmodel import Session

from models import alerts, text
from models.errors import (
    DomainError,
    IdempotencyConflict,
    InvalidValue,
    NegativeQuantity,
    NotRecorded,
    OutOfWindow,
    TooManyItems,
    UnknownOrganization,
    UnknownProduct,
    ValueOutOfRange,
)
from models.money import QUANTITY_MAX, QUANTITY_PLACES, parse_decimal
from models.prices import PriceVersion, load_book
from models.usage import staging
from models.usage.staging import Aggregate, EventRow, LineKey

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
    return text.text(value, name, required=required, limit=limit)


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


MAX_METADATA_DEPTH = 5


def _metadata(raw: Any) -> str:
    """The metadata's canonical JSON (sorted keys, no spaces, numbers in their exact decimal
    text): hashed and stored as is."""
    if raw is None or (isinstance(raw, Mapping) and not raw):
        return "{}"
    if not isinstance(raw, Mapping):
        raise InvalidValue("metadata must be a JSON object", field=("metadata",))
    problem = text.metadata_problem(raw, max_depth=MAX_METADATA_DEPTH)
    if problem is not None:
        raise InvalidValue(problem, field=("metadata",))
    canonical = _canonical(raw)
    if len(raw) > MAX_METADATA_KEYS or len(canonical) > MAX_METADATA_BYTES:
        raise InvalidValue(
            f"metadata holds at most {MAX_METADATA_KEYS} keys and {MAX_METADATA_BYTES} bytes",
            field=("metadata",),
        )
    return canonical


def _canonical(value: Any) -> str:
    """JSON text of a value `text.metadata_problem` accepted: objects with sorted keys, no
    spaces, a Decimal as its own text (so 1.50 stays 1.50 and stays a number), a float as
    Python's shortest round-trip text (what a GraphQL JSON scalar hands us)."""
    if isinstance(value, str):
        return encode_basestring_ascii(value)
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, Mapping):
        return (
            "{"
            + ",".join(
                f"{encode_basestring_ascii(k)}:{_canonical(value[k])}" for k in sorted(value)
            )
            + "}"
        )
    return "[" + ",".join(_canonical(v) for v in value) + "]"


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
    slugs = sorted(
        {
            e.organization_slug
            for e in events
            if isinstance(e.organization_slug, str) and text.storable(e.organization_slug)
        }
    )
    rows = session.execute(
        sa.text("SELECT slug, id, default_currency FROM organizations WHERE slug = ANY(:s)"),
        {"s": slugs},
    ).all()
    return {r.slug: Organization(r.id, r.default_currency.strip()) for r in rows}


def record_usage(
    session: Session,
    events: Sequence[UsageEventInput],
    *,
    now: datetime,
    request_id: str = "-",
) -> IngestResult:
    """Record a batch of usage events and add each accepted one to its organization's draft.

    Writes usage_event_ids and usage_events rows, creates drafts (and their usage_drafts rows)
    on an organization's first event of a period, upserts the drafts' usage lines and updates
    their totals. A rejected event (its index, id, code and message in the result) writes
    nothing; the module docstring gives the rule. `request_id` is quoted in NOT_RECORDED
    messages. Raises TooManyItems for more than MAX_EVENTS_PER_CALL events, and the database's
    own error when the connection is lost (the caller answers 503). Caller commits.
    """
    if len(events) > MAX_EVENTS_PER_CALL:
        raise TooManyItems(f"at most {MAX_EVENTS_PER_CALL:,} events per call", field=("events",))
    result = IngestResult()

    def reject(index: int, error: DomainError) -> None:
        raw_id = events[index].id
        result.rejected.append(
            Rejection(
                index, raw_id if isinstance(raw_id, str) and text.storable(raw_id) else None,
                error.code, error.message, error.field,
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
    try:
        outcomes = [_write(session, fresh, now=now)]
    except sqlalchemy.exc.DBAPIError as error:
        if _connection_lost(error):
            raise
        # Unforeseeable: find the (organization, period) groups it belongs to by writing each
        # on its own; the others count.
        groups: dict[tuple[int, date], list[Event]] = {}
        for e in fresh:
            groups.setdefault((e.organization_id, e.period_start), []).append(e)
        outcomes = []
        for key in sorted(groups):
            try:
                outcomes.append(_write(session, groups[key], now=now))
            except sqlalchemy.exc.DBAPIError as group_error:
                if _connection_lost(group_error):
                    raise
                failed = NotRecorded(
                    "the event could not be recorded (a server-side failure of its line); "
                    f"retry later, and quote request id {request_id} to support if it persists"
                )
                outcomes.append(_Outcome(refused={e.index: failed for e in groups[key]}))
    for outcome in outcomes:
        result.accepted += outcome.accepted
        result.duplicates += outcome.duplicates
        for index, refusal in outcome.refused.items():
            reject(index, refusal)
    result.rejected.sort(key=lambda r: r.index)
    return result


def _connection_lost(error: sqlalchemy.exc.DBAPIError) -> bool:
    """The database went away (or the statement timed out): the whole request fails and the
    edge answers 503, rather than refusing valid events one by one."""
    return isinstance(error, sqlalchemy.exc.OperationalError) or error.connection_invalidated


@dataclass
class _Outcome:
    accepted: int = 0
    duplicates: int = 0
    refused: dict[int, DomainError] = field(default_factory=dict)


class _Retry(Exception):
    """Raised inside the write savepoint to roll it back: these events must be left out, and
    with `late`, the next round takes the drafts' locks first (one was finalized meanwhile)."""

    def __init__(self, refused: dict[int, DomainError], *, late: bool = False) -> None:
        self.refused = refused
        self.late = late


# A round is written again only when it refused some events; each round refuses at least one
# more, and only a concurrent ingest filling the same lines can make a third round refuse more.
_ROUNDS = 4


def _write(session: Session, events: list[Event], *, now: datetime) -> _Outcome:
    """Write `events` (valid, priced, unique in the batch) in a savepoint, written again without
    those that turn out not to fit (see the module docstring). Raises the database's error
    (the savepoint rolled back) when a write fails."""
    refused: dict[int, DomainError] = {}
    early = True
    for round_ in range(_ROUNDS):
        todo = [e for e in events if e.index not in refused]
        try:
            with session.begin_nested():
                outcome = _write_once(
                    session, todo, now=now, last=round_ == _ROUNDS - 1, early=early
                )
        except _Retry as retry:
            refused.update(retry.refused)
            early = early and not retry.late
            continue
        outcome.refused.update(refused)
        return outcome
    raise AssertionError("unreachable: the last round refuses instead of retrying")


def _write_once(
    session: Session, events: list[Event], *, now: datetime, last: bool, early: bool
) -> _Outcome:
    """One round. The drafts' row locks (`staging.place`) serialise every ingest that touches
    the same drafts until commit, so as much as can be is done before taking them: with
    `early`, when every (organization, period) already has its open draft, the events are
    inserted and the lines staged first, then the drafts are locked and checked to be the
    same (a draft finalized in between sends the round back, to run the other way)."""
    outcome = _Outcome()
    accepted, batch, known = _claim_ids(session, events, now=now, outcome=outcome)
    if not accepted:
        return outcome
    wanted = {(e.organization_id, e.period_start): e.currency for e in accepted}
    assumed = staging.open_drafts(session, wanted) if early else None
    prices = {e.price.id: e.price for e in accepted if e.price is not None}
    staged: int | set[LineKey] | None = None
    if assumed is not None:
        _insert_events(session, batch, known, assumed, now=now)
        totals, line_of = _lines(accepted, assumed)
        staged = staging.stage_lines(
            session, totals, prices, periods={i: p for (_, p), i in assumed.items()}
        )
    placed, closed = staging.place(session, wanted, now=now)
    if closed:
        raise _Retry(
            {
                e.index: closed[(e.organization_id, e.period_start)]
                for e in accepted
                if (e.organization_id, e.period_start) in closed
            }
        )
    if assumed is not None and placed != assumed:
        raise _Retry({}, late=True)
    if assumed is None:
        _insert_events(session, batch, known, placed, now=now)
        totals, line_of = _lines(accepted, placed)
        staged = staging.stage_lines(session, totals, prices)
    assert staged is not None
    overflow = staged if isinstance(staged, set) else set()
    if not overflow:
        assert isinstance(staged, int)
        overflow = staging.write_lines(session, staged, totals, now=now)
    if overflow:
        raise _Retry(_too_big(session, accepted, line_of, overflow, prices, everything=last))
    # Under the drafts' row locks (`place`), so the totals read are the committed ones.
    alerts.evaluate(session, sorted({k.invoice_id for k in totals}), now=now)
    outcome.accepted = len(accepted)
    return outcome


def _lines(
    accepted: list[Event], placed: Mapping[tuple[int, date], int]
) -> tuple[dict[LineKey, Aggregate], dict[int, LineKey]]:
    """What the batch adds to each line, and each event's line."""
    totals: dict[LineKey, Aggregate] = {}
    line_of: dict[int, LineKey] = {}
    for e in accepted:
        assert e.price is not None
        invoice_id = placed[(e.organization_id, e.period_start)]
        key = LineKey(invoice_id, e.product, e.app, e.region, e.price.id, e.period_start)
        line_of[e.index] = key
        if key in totals:
            totals[key].add(e.quantity, e.occurred_at)
        else:
            totals[key] = Aggregate(e.quantity, e.occurred_at, e.occurred_at)
    return totals, line_of


def _too_big(
    session: Session,
    accepted: list[Event],
    line_of: Mapping[int, LineKey],
    overflow: set[LineKey],
    prices: Mapping[int, PriceVersion],
    *,
    everything: bool,
) -> dict[int, DomainError]:
    """The events to leave out of lines that would not fit: in request order, each event whose
    addition would take its line past `staging.line_fits` (counting what the line holds now);
    with `everything`, all this batch's events of those lines."""
    stored = staging.stored_quantities(session, overflow)
    running = {k: stored.get(k, Decimal(0)) for k in overflow}
    refused: dict[int, DomainError] = {}
    for e in accepted:
        key = line_of[e.index]
        if key not in overflow:
            continue
        after = running[key] + e.quantity
        if everything or not staging.line_fits(after, prices[key.price_id].unit_price):
            refused[e.index] = ValueOutOfRange(
                "this quantity would take its usage line past the largest quantity "
                f"({QUANTITY_MAX}) or amount a line can hold",
                field=("quantity",),
            )
        else:
            running[key] = after
    return refused


def _conflict(e: Event) -> IdempotencyConflict:
    return IdempotencyConflict(
        f"event id {e.event_id!r} was already used with a different payload", field=("id",)
    )


def _claim_ids(
    session: Session,
    events: list[Event],
    *,
    now: datetime,
    outcome: _Outcome,
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
        (
            EventRow(
                position=e.index,
                organization_id=e.organization_id,
                event_id=e.event_id,
                payload_sha256=e.digest,
                occurred_at=e.occurred_at,
                period_start=e.period_start,
                product=e.product,
                app=e.app,
                region=e.region,
                quantity=e.quantity,
                price_id=e.price.id if e.price else None,
                metadata=e.metadata_json,
            )
            for e in events
        ),
        EventRow,
    )
    new = {
        (r.organization_id, r.event_id)
        for r in session.execute(
            sa.text(
                "INSERT INTO usage_event_ids (organization_id, event_id, payload_sha256, "
                "occurred_at, received_at) SELECT organization_id, event_id, payload_sha256, "
                "occurred_at, :now FROM usage_event_stage "
                "WHERE batch = :b ORDER BY organization_id, event_id ON CONFLICT DO NOTHING "
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
                outcome.duplicates += 1
            else:
                outcome.refused[e.index] = _conflict(e)
    fresh = [e for e in events if e.index not in known_indexes]
    return fresh, batch, sorted(known_indexes)


# usage_events takes the staged event's columns but its hash (usage_event_ids keeps that).
_EVENT_COLUMNS = staging.targets(EventRow, leave_out=("payload_sha256",))
_EVENT_SELECT = staging.select(
    EventRow, "s", cast={"metadata": "jsonb"}, leave_out=("payload_sha256",)
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
            f"INSERT INTO usage_events ({_EVENT_COLUMNS}, invoice_id, received_at) "
            f"SELECT {_EVENT_SELECT}, m.inv, :now "
            "FROM usage_event_stage s JOIN unnest(CAST(:o AS bigint[]), CAST(:p AS date[]), "
            "CAST(:inv AS bigint[])) AS m(o, p, inv) "
            "ON m.o = s.organization_id AND m.p = s.period_start "
            "WHERE s.batch = :b AND s.position <> ALL(CAST(:skip AS integer[]))"
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
