"""Usage drafts and their aggregate lines: which draft an event lands on, and the set-based
upsert that adds a batch's quantities to the drafts' lines.

A usage aggregate is an `invoice_items` row with a `price_id`; its key (invoice, product, app,
region, price version, service period) has the partial unique index uq_invoice_items_usage_key,
which is the upsert's conflict target. Its amount is recomputed from the summed quantity with
`money.line_amount_cents` (half-even, once per line), never summed from per-event amounts.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any, NamedTuple, cast

import psycopg
import sqlalchemy as sa
from sqlmodel import Session

from models import tables
from models.errors import PeriodClosed
from models.ids import new_public_id
from models.invoices import describe, lifecycle
from models.money import line_amount_cents
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
STAGES = {
    "usage_stage": (
        ("n", "integer"), ("o", "bigint"), ("i", "text"), ("d", "bytea"), ("t", "timestamptz"),
        ("p", "date"), ("pr", "text"), ("a", "text"), ("r", "text"), ("q", "numeric"),
        ("pid", "bigint"), ("m", "text"),
    ),
    "usage_line_stage": (
        ("n", "integer"), ("pub", "text"), ("inv", "bigint"), ("descr", "text"), ("pr", "text"),
        ("a", "text"), ("r", "text"), ("un", "text"), ("q", "numeric"), ("up", "numeric"),
        ("amt", "bigint"), ("ps", "date"), ("pe", "date"), ("pid", "bigint"),
        ("f", "timestamptz"), ("la", "timestamptz"),
    ),
}  # fmt: skip
_batches = itertools.count(1)


def stage(session: Session, table: str, rows: Iterable[Sequence[Any]]) -> int:
    """COPY (binary) `rows` (in STAGES[table]'s column order) into a temporary staging table of
    this connection, under a new batch number, which is returned."""
    columns = STAGES[table]
    conn = cast("psycopg.Connection[Any]", session.connection().connection.driver_connection)
    batch = next(_batches)
    with conn.cursor() as cur:
        cur.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS {table} (batch bigint NOT NULL, "
            + ", ".join(f"{name} {kind}" for name, kind in columns)
            + ") ON COMMIT DELETE ROWS"
        )
        with cur.copy(
            f"COPY {table} (batch, {', '.join(n for n, _ in columns)}) FROM STDIN (FORMAT BINARY)"
        ) as copy:
            copy.set_types(["bigint", *(kind for _, kind in columns)])
            for row in rows:
                copy.write_row((batch, *row))
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


def add_quantities(
    session: Session,
    totals: Mapping[LineKey, Aggregate],
    prices: Mapping[int, PriceVersion],
    *,
    now: datetime,
) -> None:
    """Add quantities to usage lines (creating missing ones), then re-price each touched line from
    its new total and move the invoices' totals by the exact difference.

    One upsert (`INSERT ... SELECT` from the staged batch `... ON CONFLICT DO UPDATE SET quantity
    = l.quantity + EXCLUDED.quantity`), rows in key order so concurrent ingests lock them in the same
    order; then one UPDATE for the amounts that changed, and one for the invoices. The caller holds
    the invoices' row locks (`place`).
    """
    if not totals:
        return
    keys = sorted(
        totals,
        key=lambda k: (
            k.invoice_id,
            k.product,
            k.app or "",
            k.region or "",
            k.price_id,
            k.period_start,
        ),
    )
    periods = dict(
        session.execute(
            sa.text("SELECT id, period_start FROM invoices WHERE id = ANY(:ids)"),
            {"ids": sorted({k.invoice_id for k in keys})},
        ).all()
    )
    batch = stage(
        session,
        "usage_line_stage",
        (
            (
                n,
                new_public_id("li"),
                k.invoice_id,
                describe.usage_line(
                    prices[k.price_id].display_name or k.product,
                    k.app,
                    k.region,
                    period=k.period_start,
                    invoice_period=periods.get(k.invoice_id),
                ),
                k.product,
                k.app,
                k.region,
                prices[k.price_id].unit,
                totals[k].quantity,
                prices[k.price_id].unit_price,
                line_amount_cents(totals[k].quantity, prices[k.price_id].unit_price),
                k.period_start,
                next_month(k.period_start),
                k.price_id,
                totals[k].first,
                totals[k].last,
            )
            for n, k in enumerate(keys)
        ),
    )
    rows = session.execute(
        sa.text(
            "INSERT INTO invoice_items AS l (public_id, invoice_id, kind, description, product, app, "
            "region, unit, quantity, unit_price, amount_cents, period_start, period_end, price_id, "
            "first_usage_at, last_usage_at, created_at) "
            "SELECT pub, inv, 'usage', descr, pr, a, r, un, q, up, amt, ps, pe, pid, f, la, :now "
            "FROM usage_line_stage WHERE batch = :b ORDER BY n "
            "ON CONFLICT (invoice_id, product, app, region, price_id, period_start) "
            "WHERE price_id IS NOT NULL "
            "DO UPDATE SET quantity = l.quantity + EXCLUDED.quantity, "
            "first_usage_at = LEAST(l.first_usage_at, EXCLUDED.first_usage_at), "
            "last_usage_at = GREATEST(l.last_usage_at, EXCLUDED.last_usage_at) "
            "RETURNING l.id, l.invoice_id, l.quantity, l.unit_price, l.amount_cents, "
            "(l.xmax = 0) AS inserted"
        ),
        {"b": batch, "now": now},
    ).all()
    delta: dict[int, int] = defaultdict(int)
    added: dict[int, int] = defaultdict(int)
    changed: list[tuple[int, int]] = []
    for r in rows:
        if r.inserted:
            delta[r.invoice_id] += r.amount_cents
            added[r.invoice_id] += 1
            continue
        amount = line_amount_cents(r.quantity, r.unit_price)
        if amount != r.amount_cents:
            changed.append((r.id, amount))
            delta[r.invoice_id] += amount - r.amount_cents
    if changed:
        session.execute(
            sa.text(
                "UPDATE invoice_items l SET amount_cents = u.amt FROM unnest(CAST(:ids AS bigint[]), "
                "CAST(:amt AS bigint[])) AS u(id, amt) WHERE l.id = u.id"
            ),
            {"ids": [c[0] for c in changed], "amt": [c[1] for c in changed]},
        )
    touched = sorted(set(delta) | set(added))
    session.execute(
        sa.text(
            "UPDATE invoices i SET subtotal_cents = i.subtotal_cents + u.d, "
            "total_cents = i.total_cents + u.d, line_item_count = i.line_item_count + u.n, "
            "updated_at = :now FROM unnest(CAST(:ids AS bigint[]), CAST(:d AS bigint[]), "
            "CAST(:n AS integer[])) AS u(id, d, n) WHERE i.id = u.id"
        ),
        {
            "ids": touched,
            "d": [delta[i] for i in touched],
            "n": [added[i] for i in touched],
            "now": now,
        },
    )
