"""The month so far: an organization's current usage draft, its breakdowns and a projection.

Reads the draft's lines only (one indexed query on ix_invoice_items_invoice_id_id), never the
events, so it costs O(lines) at any event volume.

Projection (a run rate per line, not a forecast): for each usage line of the draft's own
period, rate = quantity / max(as_of - first_usage_at, 1 hour), and the projected quantity is
quantity + rate x (period_end - as_of), priced with the line's unit price and rounded half-even
like any line. A machine started yesterday is projected from its own day of usage, not diluted
over the whole month. A line with no usage in the last 24 hours is taken as stopped (no more
usage projected). Late-usage lines (an earlier service period) and hand-written lines are
already complete and count as they are.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session

from models import tables
from models.money import line_amount_cents
from models.usage.staging import month_of

MIN_ELAPSED = timedelta(hours=1)  # a run rate from a few seconds of usage would be noise
STOPPED_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class Group:
    name: str | None
    total_cents: int
    projected_cents: int


@dataclass(frozen=True)
class Upcoming:
    invoice: tables.Invoice
    as_of: datetime
    total_cents: int
    projected_cents: int
    by_product: list[Group]
    by_app: list[Group]
    by_region: list[Group]


def _midnight(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=UTC)


def projected_quantity(
    quantity: Decimal,
    *,
    first: datetime | None,
    last: datetime | None,
    as_of: datetime,
    period_end: datetime,
) -> Decimal:
    """The line's quantity at period end if it keeps its run rate (see the module docstring)."""
    if first is None or last is None or as_of >= period_end or as_of - last > STOPPED_AFTER:
        return quantity
    elapsed = max(as_of - first, MIN_ELAPSED)
    remaining = period_end - as_of
    rate = quantity / Decimal(elapsed.total_seconds())
    # 9 places, the precision of a quantity; the amount is then rounded once, like any line.
    return (quantity + rate * Decimal(remaining.total_seconds())).quantize(Decimal("1e-9"))


def _groups(totals: dict[str | None, list[int]]) -> list[Group]:
    return sorted(
        (Group(name, t, p) for name, (t, p) in totals.items()),
        key=lambda g: (-g.total_cents, g.name or ""),
    )


def upcoming(session: Session, organization_id: int, *, as_of: datetime) -> Upcoming | None:
    """The current period's usage draft of an organization, with breakdowns; None if none.

    Until the first event of a new month creates its draft, the previous month's draft is the
    month so far while it is still a draft (the close's grace); once the new month has usage,
    or the old draft is finalized (the newest OPEN invoice then), the new month's is."""
    current = month_of(as_of.astimezone(UTC))
    mapping = session.get(tables.UsageDraft, (organization_id, current))
    if mapping is None:
        previous = date(current.year - (current.month == 1), (current.month - 2) % 12 + 1, 1)
        mapping = session.get(tables.UsageDraft, (organization_id, previous))
    if mapping is None:
        return None
    invoice = session.get_one(tables.Invoice, mapping.invoice_id, populate_existing=True)
    if invoice.status != tables.InvoiceStatus.DRAFT:
        return None
    rows = session.execute(
        sa.text(
            "SELECT product, app, region, quantity, unit_price, amount_cents, period_start, "
            "price_id, first_usage_at, last_usage_at FROM invoice_items WHERE invoice_id = :id"
        ),
        {"id": mapping.invoice_id},
    ).all()
    period_end = _midnight(invoice.period_end)
    by: dict[str, dict[str | None, list[int]]] = {
        "product": defaultdict(lambda: [0, 0]),
        "app": defaultdict(lambda: [0, 0]),
        "region": defaultdict(lambda: [0, 0]),
    }
    total = projected = 0
    for r in rows:
        amount = r.amount_cents
        if r.price_id is not None and r.period_start == invoice.period_start:
            q = projected_quantity(
                r.quantity,
                first=r.first_usage_at,
                last=r.last_usage_at,
                as_of=as_of,
                period_end=period_end,
            )
            future = line_amount_cents(q, r.unit_price)
        else:
            future = amount
        total += amount
        projected += future
        for name, value in (("product", r.product), ("app", r.app), ("region", r.region)):
            by[name][value][0] += amount
            by[name][value][1] += future
    # total is the sum of the lines just read, so the breakdowns add up to it exactly even if
    # an ingest committed between reading the invoice row and its lines.
    return Upcoming(
        invoice=invoice,
        as_of=as_of,
        total_cents=total,
        projected_cents=projected,
        by_product=_groups(by["product"]),
        by_app=_groups(by["app"]),
        by_region=_groups(by["region"]),
    )
