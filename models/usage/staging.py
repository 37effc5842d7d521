"""Usage drafts and their aggregate lines: which draft an event lands on, and the set-based
upsert that adds a batch's quantities to the drafts' lines.

A usage aggregate is an `invoice_items` row with a `price_id`; its key (invoice, product, app,
region, price version, service period) has the partial unique index uq_invoice_items_usage_key,
which is the upsert's conflict target. Its amount is recomputed from the summed quantity with
`money.line_amount_cents` (half-even, once per line), never summed from per-event amounts.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

import psycopg
import sqlalchemy as sa
from sqlmodel import Session

from models import tables
from models.errors import PeriodClosed, ValueOutOfRange
from models.ids import new_public_id
from models.invoices import describe, lifecycle
from models.invoices import totals as invoice_totals
from models.money import AMOUNT_MAX_CENTS, QUANTITY_MAX, line_amount_cents
from models.prices import PriceVersion
from models.tables import InvoiceStatus

# Namespace of the advisory lock that serialises the creation of an organization's usage draft
# (the second key is the organization id); taken only when no draft exists yet.
DRAFT_LOCK_NAMESPACE = 0x75736167  # "usag"


# Batches are sent to PostgreSQL with binary COPY into temporary staging tables, then moved by
# set-based INSERT ... SELECT. COPY's rows are formatted by psycopg's C code, where an unnest of
# array parameters is dumped element by element in Python (a third of an ingest's time, before).
# ON COMMIT DELETE ROWS empties them at commit, without the catalog churn of a table per
# transaction; the batch number keeps two calls in one transaction apart.
#
# Each stage is one NamedTuple: its field names are the staging table's columns and, but for
# `position`, the names of the columns they are copied into, so the CREATE TEMP TABLE, the COPY
# column list and the INSERT ... SELECT lists are all generated from it (`columns`, `select`).


class EventRow(NamedTuple):
    """One accepted-so-far event of a batch, COPYed into usage_event_stage."""

    position: int  # the event's index in the request
    organization_id: int
    event_id: str
    payload_sha256: bytes
    occurred_at: datetime
    period_start: date
    product: str
    app: str | None
    region: str | None
    quantity: Decimal
    price_id: int | None
    metadata: str  # canonical JSON text, cast to jsonb on the way into usage_events


class LineRow(NamedTuple):
    """What a batch adds to one usage line, COPYed into usage_line_stage."""

    position: int  # the line's place in key order (the upsert's row order)
    public_id: str
    invoice_id: int
    description: str
    product: str
    app: str | None
    region: str | None
    unit: str
    quantity: Decimal
    unit_price: Decimal
    amount_cents: int
    period_start: date
    period_end: date
    price_id: int
    first_usage_at: datetime
    last_usage_at: datetime


STAGES: dict[type[tuple[Any, ...]], str] = {
    EventRow: "usage_event_stage",
    LineRow: "usage_line_stage",
}
# Checked in this order: datetime is a date.
_SQL_TYPES = ((bool, "boolean"), (int, "bigint"), (str, "text"), (bytes, "bytea"),
              (datetime, "timestamptz"), (date, "date"), (Decimal, "numeric"))  # fmt: skip
_batches = itertools.count(1)


def _sql_type(hint: Any) -> str:
    args = [a for a in typing.get_args(hint) if a is not type(None)] or [hint]
    for py, sql in _SQL_TYPES:
        if isinstance(args[0], type) and issubclass(args[0], py):
            return sql
    raise TypeError(f"no SQL type for {hint!r}")


def columns(row: type[tuple[Any, ...]]) -> list[tuple[str, str]]:
    """(name, SQL type) of each field of a stage's row, in order."""
    hints = typing.get_type_hints(row)
    return [(name, _sql_type(hints[name])) for name in row._fields]  # type: ignore[attr-defined]


def select(
    row: type[tuple[Any, ...]],
    alias: str,
    *,
    cast: Mapping[str, str] | None = None,
    leave_out: tuple[str, ...] = (),
) -> str:
    """The stored columns of a stage (all but `position` and `leave_out`) as
    `alias.name[::cast]`, in order: the SELECT list matching `targets(row, leave_out)`."""
    return ", ".join(
        f"{alias}.{name}" + (f"::{cast[name]}" if cast and name in cast else "")
        for name in _stored(row, leave_out)
    )


def targets(row: type[tuple[Any, ...]], leave_out: tuple[str, ...] = ()) -> str:
    """The target column list matching `select(row, ..., leave_out=leave_out)`."""
    return ", ".join(_stored(row, leave_out))


def _stored(row: type[tuple[Any, ...]], leave_out: tuple[str, ...]) -> list[str]:
    return [n for n, _ in columns(row) if n != "position" and n not in leave_out]


def stage(session: Session, rows: Iterable[EventRow] | Iterable[LineRow], row: type) -> int:
    """COPY (binary) `rows`, all of type `row`, into that stage's temporary table of this
    connection, under a new batch number, which is returned."""
    table = STAGES[row]
    cols = columns(row)
    conn = cast("psycopg.Connection[Any]", session.connection().connection.driver_connection)
    batch = next(_batches)
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {table} (batch bigint NOT NULL, "
            + ", ".join(f"{name} {kind}" for name, kind in cols)
            + ") ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            f"COPY {table} (batch, {', '.join(n for n, _ in cols)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["bigint", *(kind for _, kind in cols)])
            for r in rows:
                copy.write_row((batch, *r))
    return batch


@dataclass
class Aggregate:
    """What a batch adds to one line: its summed quantity and its events' time span."""

    quantity: Decimal
    first: datetime
    last: datetime

    def add(self, quantity: Decimal, at: datetime) -> None:
        self.quantity += quantity
        self.first = min(self.first, at)
        self.last = max(self.last, at)


class LineKey(NamedTuple):
    invoice_id: int
    product: str
    app: str | None
    region: str | None
    price_id: int
    period_start: date


def next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def month_of(at: datetime) -> date:
    return date(at.year, at.month, 1)


def _mapped(
    session: Session, keys: list[tuple[int, date]]
) -> dict[tuple[int, date], tuple[int, str]]:
    """(organization, period) -> (invoice id, status) for the drafts that exist."""
    if not keys:
        return {}
    rows = session.execute(
        sa.text(
            "SELECT d.organization_id, d.period_start, i.id, i.status FROM usage_drafts d "
            "JOIN invoices i ON i.id = d.invoice_id WHERE (d.organization_id, d.period_start) IN "
            "(SELECT * FROM unnest(CAST(:o AS bigint[]), CAST(:p AS date[])))"
        ),
        {"o": [k[0] for k in keys], "p": [k[1] for k in keys]},
    ).all()
    return {(r.organization_id, r.period_start): (r.id, r.status) for r in rows}


def _create(session: Session, key: tuple[int, date], currency: str, *, now: datetime) -> int:
    """The draft of (organization, period), created if missing under the organization's
    advisory lock, so that two first events of a month create one draft."""
    org_id, period = key
    session.execute(
        sa.text("SELECT pg_advisory_xact_lock(:ns, CAST(:org % 2147483647 AS integer))"),
        {"ns": DRAFT_LOCK_NAMESPACE, "org": org_id},
    )
    found = _mapped(session, [key]).get(key)
    if found is not None:
        return found[0]
    org = session.get_one(tables.Organization, org_id)
    draft = lifecycle.create_draft(
        session,
        org,
        currency=currency,
        period_start=period,
        period_end=next_month(period),
        now=now,
    )
    assert draft.id is not None
    session.add(tables.UsageDraft(organization_id=org_id, period_start=period, invoice_id=draft.id))
    session.flush()
    return draft.id


def open_drafts(
    session: Session, wanted: Mapping[tuple[int, date], str]
) -> dict[tuple[int, date], int] | None:
    """(organization, period) -> its draft, read without a lock, when every key has its own
    open draft; None otherwise (a draft to create, or late usage: `place` decides)."""
    mapped = _mapped(session, sorted(wanted))
    if len(mapped) != len(wanted) or any(s != InvoiceStatus.DRAFT for _, s in mapped.values()):
        return None
    return {key: found[0] for key, found in mapped.items()}


def place(
    session: Session, wanted: Mapping[tuple[int, date], str], *, now: datetime
) -> tuple[dict[tuple[int, date], int], dict[tuple[int, date], PeriodClosed]]:
    """For each (organization, service period) -> currency: the draft its usage lands on, locked
    (FOR NO KEY UPDATE, in invoice id order) until the caller's transaction ends.

    The period's own draft while it is a draft; once it is finalized, the organization's current
    draft (the period of `now`), where the usage becomes a late-usage line that keeps its own
    service period. When that one is finalized too, the key maps to a PeriodClosed error.
    """
    current = month_of(now)
    placed: dict[tuple[int, date], int] = {}
    closed: dict[tuple[int, date], PeriodClosed] = {}
    pending = dict(wanted)
    # A round starts over only when a draft it targeted was finalized between our read and our
    # lock. A finalized draft stays finalized, and each organization has at most two drafts in
    # play (its period's and the current one), so 2 x organizations + 1 rounds always suffice.
    rounds = 2 * len({org for org, _ in wanted}) + 1
    for _ in range(rounds):
        # Each round runs in a savepoint: a round that must start over rolls it back, which
        # releases the row locks it took, so the next round's draft creation (an advisory
        # lock) never waits while holding invoice rows another ingest wants (a deadlock seen
        # with two feeders racing two closers).
        round_ = session.begin_nested()
        lookup = sorted({*pending, *((org, current) for org, _ in pending)})
        mapped = _mapped(session, lookup)
        target: dict[tuple[int, date], tuple[int, date]] = {}
        for key in sorted(pending):
            own = mapped.get(key)
            if own is None or own[1] == InvoiceStatus.DRAFT:
                target[key] = key
                continue
            late = (key[0], current)
            cur = mapped.get(late)
            if late == key or (cur is not None and cur[1] != InvoiceStatus.DRAFT):
                closed[key] = PeriodClosed(
                    f"the usage period {key[1]:%Y-%m} is finalized and there is no open draft "
                    "to add late usage to",
                    field=("occurredAt",),
                )
            else:
                target[key] = late
        ids: dict[tuple[int, date], int] = {}
        for tkey in sorted(set(target.values())):
            found = mapped.get(tkey)
            ids[tkey] = (
                found[0] if found else _create(session, tkey, pending[_any(target, tkey)], now=now)
            )
        statuses = dict(
            session.execute(
                sa.text(
                    "SELECT id, status FROM invoices WHERE id = ANY(:ids) ORDER BY id "
                    "FOR NO KEY UPDATE"
                ),
                {"ids": sorted(set(ids.values()))},
            ).all()
        )
        if all(statuses.get(ids[tkey]) == InvoiceStatus.DRAFT for tkey in target.values()):
            round_.commit()
            placed.update({key: ids[tkey] for key, tkey in target.items()})
            return placed, closed
        round_.rollback()
    for key in pending:
        closed[key] = PeriodClosed(
            "the draft was finalized while usage arrived; retry", field=("occurredAt",)
        )
    return placed, closed


def _any(
    target: Mapping[tuple[int, date], tuple[int, date]], tkey: tuple[int, date]
) -> tuple[int, date]:
    return next(k for k, t in target.items() if t == tkey)


def line_fits(quantity: Decimal, unit_price: Decimal) -> bool:
    """A line of this summed quantity can be stored: within NUMERIC(20,9) and its amount within
    the money limit (`money.line_amount_cents` raises past it)."""
    if quantity > QUANTITY_MAX:
        return False
    try:
        line_amount_cents(quantity, unit_price)
    except ValueOutOfRange:
        return False
    return True


def add_quantities(
    session: Session,
    totals: Mapping[LineKey, Aggregate],
    prices: Mapping[int, PriceVersion],
    *,
    now: datetime,
) -> set[LineKey]:
    """Add quantities to usage lines (creating missing ones), then re-price each touched line from
    its new total and move the invoices' totals by the exact difference.

    One upsert (`INSERT ... SELECT` from the staged batch `... ON CONFLICT DO UPDATE SET quantity
    = l.quantity + EXCLUDED.quantity, amount_cents = usage_half_even(...)`), rows in key order so
    concurrent ingests lock them in the same order; then `invoices.totals.recompute` for the drafts (one statement; it reads the drafts' lines,
    O(lines) per touched draft). The caller holds
    the invoices' row locks (`place`).

    Returns the keys of the lines that would not fit (`line_fits`) after the addition, empty when
    all was written. When it is not empty, some lines may have been written and others not: the
    caller must roll back (a savepoint) and try again without the events that do not fit
    (models/usage/ingest.py). Overflow is found without a statement of its own: a batch's sums
    are checked here, and the upsert's DO UPDATE skips (and RETURNING omits) a line whose stored
    quantity plus this batch's would pass the column.
    """
    staged = stage_lines(session, totals, prices)
    if isinstance(staged, set):
        return staged
    return write_lines(session, staged, totals, now=now)


def stage_lines(
    session: Session,
    totals: Mapping[LineKey, Aggregate],
    prices: Mapping[int, PriceVersion],
    periods: Mapping[int, date] | None = None,
) -> int | set[LineKey]:
    """The first half of `add_quantities`, which needs no lock: COPY what the batch adds to
    each line into usage_line_stage; returns its batch number, or the keys of the lines whose
    batch sum alone would not fit (nothing staged). `periods` (invoice id -> its period) saves
    a query when the caller knows them."""
    if not totals:
        return set()
    too_big = {
        k for k, a in totals.items() if not line_fits(a.quantity, prices[k.price_id].unit_price)
    }
    if too_big:
        return too_big
    keys = sorted(totals, key=key_order)
    if periods is None:
        periods = dict(
            session.execute(
                sa.text("SELECT id, period_start FROM invoices WHERE id = ANY(:ids)"),
                {"ids": sorted({k.invoice_id for k in keys})},
            ).all()
        )
    return stage(
        session,
        (
            LineRow(
                position=n,
                public_id=new_public_id("li"),
                invoice_id=k.invoice_id,
                description=describe.usage_line(
                    prices[k.price_id].display_name or k.product,
                    k.app,
                    k.region,
                    period=k.period_start,
                    invoice_period=periods.get(k.invoice_id),
                ),
                product=k.product,
                app=k.app,
                region=k.region,
                unit=prices[k.price_id].unit,
                quantity=totals[k].quantity,
                unit_price=prices[k.price_id].unit_price,
                amount_cents=line_amount_cents(totals[k].quantity, prices[k.price_id].unit_price),
                period_start=k.period_start,
                period_end=next_month(k.period_start),
                price_id=k.price_id,
                first_usage_at=totals[k].first,
                last_usage_at=totals[k].last,
            )
            for n, k in enumerate(keys)
        ),
        LineRow,
    )


def write_lines(
    session: Session, batch: int, totals: Mapping[LineKey, Aggregate], *, now: datetime
) -> set[LineKey]:
    """The second half of `add_quantities`, under the drafts' row locks: upsert the staged
    lines and move the drafts' totals; returns the keys of lines that would not fit (see
    `add_quantities`)."""
    if not totals:
        return set()
    # One write per line: quantity and amount in the same upsert (the amount by the one
    # rounding rule, usage_half_even in SQL), skipped when the line would not fit.
    rows = session.execute(
        sa.text(
            f"INSERT INTO invoice_items AS l ({targets(LineRow)}, kind, created_at) "
            f"SELECT {select(LineRow, 's')}, 'usage', :now "
            "FROM usage_line_stage s WHERE s.batch = :b ORDER BY s.position "
            "ON CONFLICT (invoice_id, product, app, region, price_id, period_start) "
            "WHERE price_id IS NOT NULL "
            "DO UPDATE SET quantity = l.quantity + EXCLUDED.quantity, "
            "amount_cents = usage_half_even((l.quantity + EXCLUDED.quantity) * l.unit_price), "
            "first_usage_at = LEAST(l.first_usage_at, EXCLUDED.first_usage_at), "
            "last_usage_at = GREATEST(l.last_usage_at, EXCLUDED.last_usage_at) "
            "WHERE l.quantity + EXCLUDED.quantity <= :qmax "
            "AND usage_half_even((l.quantity + EXCLUDED.quantity) * l.unit_price) <= :amax "
            "RETURNING l.invoice_id, l.product, l.app, l.region, l.price_id, "
            "l.period_start, l.quantity, l.unit_price, l.amount_cents, (l.xmax = 0) AS inserted"
        ),
        {"b": batch, "now": now, "qmax": QUANTITY_MAX, "amax": AMOUNT_MAX_CENTS},
    ).all()
    written = {
        LineKey(r.invoice_id, r.product, r.app, r.region, r.price_id, r.period_start): r
        for r in rows
    }
    overflow = set(totals) - set(written)
    if overflow:
        return overflow
    # The drafts' totals from their lines, one statement for all of them (the one totals rule).
    invoice_totals.recompute(session, sorted({r.invoice_id for r in rows}), now=now)
    return set()


def key_order(k: LineKey) -> tuple[object, ...]:
    """Lines are locked and compared in this order (None sorts as "")."""
    return (k.invoice_id, k.product, k.app or "", k.region or "", k.price_id, k.period_start)


def stored_quantities(session: Session, keys: Iterable[LineKey]) -> dict[LineKey, Decimal]:
    """The stored quantity of each of these usage lines that exists."""
    ks = sorted(keys, key=key_order)
    if not ks:
        return {}
    rows = session.execute(
        sa.text(
            "SELECT l.invoice_id, l.product, l.app, l.region, l.price_id, l.period_start, "
            "l.quantity FROM invoice_items l JOIN unnest(CAST(:i AS bigint[]), CAST(:pr AS text[]), "
            "CAST(:a AS text[]), CAST(:r AS text[]), CAST(:pid AS bigint[]), CAST(:ps AS date[])) "
            "AS k(i, pr, a, r, pid, ps) ON l.invoice_id = k.i AND l.product = k.pr "
            "AND l.app IS NOT DISTINCT FROM k.a AND l.region IS NOT DISTINCT FROM k.r "
            "AND l.price_id = k.pid AND l.period_start = k.ps"
        ),
        {
            "i": [k.invoice_id for k in ks],
            "pr": [k.product for k in ks],
            "a": [k.app for k in ks],
            "r": [k.region for k in ks],
            "pid": [k.price_id for k in ks],
            "ps": [k.period_start for k in ks],
        },
    ).all()
    return {
        LineKey(r.invoice_id, r.product, r.app, r.region, r.price_id, r.period_start): r.quantity
        for r in rows
    }
