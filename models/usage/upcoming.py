"""The month so far (the preview of issue 22): the invoice the close would produce for a period
if it ended now, its breakdowns, and the projection to period end.

Preview equals final: the draft's stored lines, plus the recurring lines computed by the close's
own code (`models.invoices.recurring`), totalled by the one totals rule (`invoices.totals`). Reads
the draft's lines (one indexed query on ix_invoice_items_invoice_id_id), never the events, so it
costs O(lines) at any event volume. The projection and its range are models/usage/forecast.py's
`forecast` over those lines (`line_usage` says how a line is read; recurring lines count
exactly), the same function the backtest (bench/forecast.py) measures; `projections` does the
same for many organizations at once (the forecast alerts' beat tick).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.errors import DomainError, PeriodClosed
from models.invoices import recurring, totals
from models.usage.forecast import Forecast, Kind, LineUsage, forecast, kind_of
from models.usage.staging import month_of, next_month


@dataclass(frozen=True)
class Group:
    name: str | None
    total_cents: int
    projected_cents: int
    low_cents: int = 0
    high_cents: int = 0


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
    low_cents: int
    high_cents: int
    method: str
    lines: list[Line]
    by_product: list[Group]
    by_app: list[Group]
    by_region: list[Group]


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=UTC)


def line_usage(row: Any, period_start: date) -> LineUsage:
    """How the forecast reads one draft line: usage of the draft's own period by its unit's kind;
    anything else (recurring, one-off, late usage of an earlier period) is complete."""
    if row.price_id is None or row.period_start != period_start:
        return LineUsage(Kind.EXACT, row.amount_cents)
    return LineUsage(kind_of(row.unit), row.amount_cents, row.first_usage_at, row.last_usage_at)


def project(
    invoice: tables.Invoice, rows: Sequence[Any], *, as_of: datetime
) -> tuple[tuple[LineUsage, ...], Forecast]:
    """The forecast of a draft's lines (rows with unit, price_id, period_start, amount_cents,
    first_usage_at, last_usage_at) as of `as_of`."""
    lines = tuple(line_usage(r, invoice.period_start) for r in rows)
    return lines, forecast(
        lines,
        as_of=as_of,
        period_start=midnight(invoice.period_start),
        period_end=midnight(invoice.period_end),
    )


def _groups(totals: dict[str | None, list[int]]) -> list[Group]:
    return sorted(
        (Group(name, *t) for name, t in totals.items()),
        key=lambda g: (-g.total_cents, g.name or ""),
    )


def current_drafts(
    session: Session, organization_ids: Sequence[int], *, as_of: datetime
) -> dict[int, tables.Invoice]:
    """The draft that is the month so far of each of these organizations (absent: none).

    Until the first event of a new month creates its draft, the previous month's draft is the
    month so far while it is still a draft (the close's grace); once the new month has usage,
    or the old draft is finalized (the newest OPEN invoice then), the new month's is.
    Two queries whatever the number of organizations (usage_drafts by primary key, invoices by
    id)."""
    if not organization_ids:
        return {}
    current = month_of(as_of.astimezone(UTC))
    previous = date(current.year - (current.month == 1), (current.month - 2) % 12 + 1, 1)
    d = tables.UsageDraft
    chosen: dict[int, tables.UsageDraft] = {}
    for mapping in session.exec(
        select(d).where(
            col(d.organization_id).in_(sorted(set(organization_ids))),
            col(d.period_start).in_([current, previous]),
        )
    ).all():
        # The current month's mapping wins over the previous month's.
        if mapping.period_start == current or mapping.organization_id not in chosen:
            chosen[mapping.organization_id] = mapping
    if not chosen:
        return {}
    i = tables.Invoice
    invoices = session.exec(
        select(i)
        .where(col(i.id).in_([m.invoice_id for m in chosen.values()]))
        .execution_options(populate_existing=True)
    ).all()
    return {
        inv.organization_id: inv for inv in invoices if inv.status == tables.InvoiceStatus.DRAFT
    }


_DRAFT_LINES = sa.text(
    "SELECT invoice_id, product, app, region, unit, amount_cents, period_start, price_id,"
    " first_usage_at, last_usage_at FROM invoice_items WHERE invoice_id = ANY(:ids)"
)


@dataclass(frozen=True)
class Projected:
    invoice: tables.Invoice
    total_cents: int  # the draft's lines so far
    forecast: Forecast


def projections(
    session: Session, organization_ids: Sequence[int], *, as_of: datetime
) -> dict[int, Projected]:
    """The forecast of each of these organizations' month so far (absent: no draft): what the
    forecast alerts' beat tick reads, in three queries for any number of organizations."""
    drafts = current_drafts(session, organization_ids, as_of=as_of)
    if not drafts:
        return {}
    by_invoice: dict[int, list[Any]] = defaultdict(list)
    ids = [inv.id for inv in drafts.values()]
    for r in session.execute(_DRAFT_LINES, {"ids": ids}).all():
        by_invoice[r.invoice_id].append(r)
    out: dict[int, Projected] = {}
    for org_id, inv in drafts.items():
        assert inv.id is not None
        rows = by_invoice[inv.id]
        _, f = project(inv, rows, as_of=as_of)
        out[org_id] = Projected(inv, sum(r.amount_cents for r in rows), f)
    return out


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
    lines the close adds (`invoices.recurring`, the close's own code), totals by the one totals
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
    lines: list[Line] = [
        *(Line._make(r[:11]) for r in rows),
        *(Line(*(v[k] for k in Line._fields)) for v in plan),
    ]
    # The draft's lines as the forecast reads them, then the recurring ones, which are exact:
    # the order the close leaves them in.
    usage = [
        *(line_usage(r, start) for r in rows),
        *(LineUsage(Kind.EXACT, v["amount_cents"]) for v in plan),
    ]
    f = forecast(usage, as_of=as_of, period_start=midnight(start), period_end=midnight(end))
    by: dict[str, dict[str | None, list[int]]] = {
        "product": defaultdict(lambda: [0, 0, 0, 0]),
        "app": defaultdict(lambda: [0, 0, 0, 0]),
        "region": defaultdict(lambda: [0, 0, 0, 0]),
    }
    for line, lf in zip(lines, f.lines, strict=True):
        for name, value in (("product", line.product), ("app", line.app), ("region", line.region)):
            g = by[name][value]
            g[0] += line.amount_cents
            g[1] += lf.total_cents
            g[2] += lf.low_cents
            g[3] += lf.high_cents
    # total is the sum of the lines just read, so the breakdowns add up to it exactly even if
    # an ingest committed between reading the invoice row and its lines.
    return Upcoming(
        invoice=invoice,
        period_start=start,
        period_end=end,
        currency=currency,
        as_of=as_of,
        total_cents=totals.subtotal_of(line.amount_cents for line in lines),
        projected_cents=f.total_cents,
        low_cents=f.low_cents,
        high_cents=f.high_cents,
        method=f.method,
        lines=lines,
        by_product=_groups(by["product"]),
        by_app=_groups(by["app"]),
        by_region=_groups(by["region"]),
    )
