"""The month so far (the preview of issue 22): the invoice the close would produce for a period
if it ended now, its breakdowns and a projection.

Preview equals final: the draft's stored lines, plus the recurring lines computed by the close's
own code (`models.close.recurring`), totalled by the one totals rule (`invoices.totals`). Reads
the draft's lines (one indexed query on ix_invoice_items_invoice_id_id), never the events, so it
costs O(lines) at any event volume.

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
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.close import recurring
from models.errors import DomainError, PeriodClosed
from models.invoices import totals
from models.money import line_amount_cents
from models.usage.staging import month_of, next_month

MIN_ELAPSED = timedelta(hours=1)  # a run rate from a few seconds of usage would be noise
STOPPED_AFTER = timedelta(hours=24)


@dataclass(frozen=True)
class Group:
    name: str | None
    total_cents: int
    projected_cents: int


class Line(NamedTuple):
    """One line of the invoice the close would produce: stored on the draft, or recurring.
    A NamedTuple, not a dataclass: built once per line on the most-read query (a frozen
    dataclass cost ~3 us a line more)."""

    kind: str  # a LineItemKind value
    description: str
    product: str
    app: str | None
    region: str | None
    unit: str
    quantity: Decimal
    unit_price: Decimal
    amount_cents: int
    period_start: date | None
    period_end: date | None


@dataclass(frozen=True)
class Upcoming:
    invoice: tables.Invoice | None  # the period's usage draft; None before its first usage
    period_start: date
    period_end: date
    currency: str
    as_of: datetime
    total_cents: int
    projected_cents: int
    lines: list[Line]
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


_LINES = sa.text(
    "SELECT kind, description, product, app, region, unit, quantity, unit_price, amount_cents, "
    "period_start, period_end, price_id, first_usage_at, last_usage_at FROM invoice_items "
    "WHERE invoice_id = :id ORDER BY id"
)


def upcoming(
    session: Session, organization_id: int, *, as_of: datetime, period: date | None = None
) -> Upcoming:
    """The invoice `billing close-period` would produce for `period` (default: the month of
    `as_of`) if the period ended now: the usage draft's lines in their order, then the recurring
    lines the close adds (`close.recurring`, the close's own code), totals by the one totals
    rule, breakdowns, and the projection. Never None: without a draft, the recurring lines alone
    (an empty $0 without a subscription either). Raises PeriodClosed (the period's draft is
    finalized), UnknownProduct (a plan with no price: the close would fail that invoice too).

    A read: no row locks; a fixed number of statements (draft, its lines, subscriptions,
    prices), O(lines)."""
    start = period or month_of(as_of.astimezone(UTC))
    d = tables.UsageDraft
    invoice = session.exec(
        select(tables.Invoice)
        .join(d, col(d.invoice_id) == col(tables.Invoice.id))
        .where(col(d.organization_id) == organization_id, col(d.period_start) == start)
        .execution_options(populate_existing=True)
    ).first()
    if invoice is None:
        org = session.get_one(tables.Organization, organization_id)
        currency, end = org.default_currency.strip(), next_month(start)
        rows: list[Any] = []
    elif invoice.status != tables.InvoiceStatus.DRAFT:
        raise PeriodClosed(
            f"the {start:%Y-%m} invoice is {invoice.status}: see the invoice itself",
            field=("period",),
        )
    else:
        currency, end = invoice.currency.strip(), invoice.period_end
        rows = list(session.execute(_LINES, {"id": invoice.id}))
    (plan,) = recurring.lines_for(
        session, [recurring.Period(organization_id, currency, start, end)]
    )
    if isinstance(plan, DomainError):
        raise plan
    period_end = _midnight(end)
    by: dict[str, dict[str | None, list[int]]] = {
        "product": defaultdict(lambda: [0, 0]),
        "app": defaultdict(lambda: [0, 0]),
        "region": defaultdict(lambda: [0, 0]),
    }
    lines: list[Line] = []
    projected = 0
    # The draft's lines, then the recurring ones (complete, not projected, like hand-written
    # lines): the order the close leaves them in.
    for line, price_id, first, last in [
        *((Line._make(r[:11]), r.price_id, r.first_usage_at, r.last_usage_at) for r in rows),
        *((Line(*(v[k] for k in Line._fields)), None, None, None) for v in plan),
    ]:
        amount = line.amount_cents
        if price_id is not None and line.period_start == start:
            q = projected_quantity(
                line.quantity, first=first, last=last, as_of=as_of, period_end=period_end
            )
            future = line_amount_cents(q, line.unit_price)
        else:
            future = amount
        lines.append(line)
        projected += future
        for name, value in (("product", line.product), ("app", line.app), ("region", line.region)):
            by[name][value][0] += amount
            by[name][value][1] += future
    # total is the sum of the lines just read, so the breakdowns add up to it exactly even if
    # an ingest committed between reading the invoice row and its lines.
    return Upcoming(
        invoice=invoice,
        period_start=start,
        period_end=end,
        currency=currency,
        as_of=as_of,
        total_cents=totals.subtotal_of(line.amount_cents for line in lines),
        projected_cents=projected,
        lines=lines,
        by_product=_groups(by["product"]),
        by_app=_groups(by["app"]),
        by_region=_groups(by["region"]),
    )
