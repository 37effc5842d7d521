"""The month so far: an organization's current usage draft, its breakdowns and a projection.

Reads the draft's lines only (one indexed query on ix_invoice_items_invoice_id_id), never the
events, so it costs O(lines) at any event volume; `projections` does the same for many
organizations at once (the forecast alerts). The projection and its range are
models/usage/forecast.py's `forecast` over those lines (`line_usage` says how a line is read),
the same function the backtest (bench/forecast.py) measures.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.usage.forecast import Forecast, Kind, LineUsage, forecast, kind_of
from models.usage.staging import month_of


@dataclass(frozen=True)
class Group:
    name: str | None
    total_cents: int
    projected_cents: int
    low_cents: int = 0
    high_cents: int = 0


@dataclass(frozen=True)
class Upcoming:
    invoice: tables.Invoice
    as_of: datetime
    total_cents: int
    projected_cents: int
    low_cents: int
    high_cents: int
    method: str
    by_product: list[Group]
    by_app: list[Group]
    by_region: list[Group]
    lines: tuple[LineUsage, ...] = ()  # what the forecast was computed over


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


def current_draft(
    session: Session, organization_id: int, *, as_of: datetime
) -> tables.Invoice | None:
    """The draft that is one organization's month so far, or None (current_drafts)."""
    return current_drafts(session, [organization_id], as_of=as_of).get(organization_id)


_LINES = sa.text(
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
    for r in session.execute(_LINES, {"ids": ids}).all():
        by_invoice[r.invoice_id].append(r)
    out: dict[int, Projected] = {}
    for org_id, inv in drafts.items():
        assert inv.id is not None
        rows = by_invoice[inv.id]
        _, f = project(inv, rows, as_of=as_of)
        out[org_id] = Projected(inv, sum(r.amount_cents for r in rows), f)
    return out


def upcoming(session: Session, organization_id: int, *, as_of: datetime) -> Upcoming | None:
    """The current period's usage draft of an organization, with breakdowns and its forecast;
    None if none (see current_draft)."""
    invoice = current_draft(session, organization_id, as_of=as_of)
    if invoice is None:
        return None
    rows = session.execute(_LINES, {"ids": [invoice.id]}).all()
    lines, f = project(invoice, rows, as_of=as_of)
    by: dict[str, dict[str | None, list[int]]] = {
        "product": defaultdict(lambda: [0, 0, 0, 0]),
        "app": defaultdict(lambda: [0, 0, 0, 0]),
        "region": defaultdict(lambda: [0, 0, 0, 0]),
    }
    for r, lf in zip(rows, f.lines, strict=True):
        for name, value in (("product", r.product), ("app", r.app), ("region", r.region)):
            g = by[name][value]
            g[0] += r.amount_cents
            g[1] += lf.total_cents
            g[2] += lf.low_cents
            g[3] += lf.high_cents
    # total is the sum of the lines just read, so the breakdowns add up to it exactly even if
    # an ingest committed between reading the invoice row and its lines.
    return Upcoming(
        invoice=invoice,
        as_of=as_of,
        total_cents=sum(r.amount_cents for r in rows),
        projected_cents=f.total_cents,
        low_cents=f.low_cents,
        high_cents=f.high_cents,
        method=f.method,
        by_product=_groups(by["product"]),
        by_app=_groups(by["app"]),
        by_region=_groups(by["region"]),
        lines=lines,
    )
