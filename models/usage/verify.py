"""`billing usage verify` and `billing usage replay`: invoices' usage lines against their events.

Verify recomputes every invoice's usage aggregates from the events that landed on it (grouped
by the line key), drafts and finalized invoices alike, and compares quantity, unit price and
amount line by line; and each usage draft's totals with the sum of its lines (a finalized
invoice's totals are the finalize's, checked by `billing rollup verify`). It reads every event of every open draft, so it is a batch job (like
`billing rollup verify`), never a request path. Replay rebuilds one draft's usage lines from its
events, in one transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import organizations, tables
from models.errors import InvoiceNotDraft, NotFound
from models.invoices import totals as invoice_totals
from models.money import line_amount_cents
from models.prices import PriceVersion
from models.tables import InvoiceStatus
from models.usage import staging
from models.usage.staging import Aggregate, LineKey


@dataclass(frozen=True)
class UsageDiff:
    invoice_id: int
    what: str  # "line" or "totals"
    key: LineKey | None
    expected: tuple[object, ...]
    stored: tuple[object, ...]


def _recomputed(session: Session, invoice_ids: list[int] | None) -> dict[LineKey, Aggregate]:
    where = "WHERE e.invoice_id = ANY(:ids)" if invoice_ids is not None else ""
    rows = session.execute(
        sa.text(
            "SELECT e.invoice_id, e.product, e.app, e.region, e.price_id, e.period_start, "
            "sum(e.quantity) AS q, min(e.occurred_at) AS f, max(e.occurred_at) AS la "
            f"FROM usage_events e {where} GROUP BY 1, 2, 3, 4, 5, 6"
        ),
        {"ids": invoice_ids or []},
    ).all()
    return {
        LineKey(r.invoice_id, r.product, r.app, r.region, r.price_id, r.period_start): Aggregate(
            r.q, r.f, r.la
        )
        for r in rows
    }


def _prices(session: Session, ids: set[int]) -> dict[int, PriceVersion]:
    rows = session.exec(select(tables.Price).where(col(tables.Price.id).in_(sorted(ids)))).all()
    return {v.id: v for v in (PriceVersion.from_row(r) for r in rows)}


def verify(session: Session) -> list[UsageDiff]:
    """Every difference between the invoices' usage lines and their events, and between the
    usage drafts' totals and their lines; empty when exact."""
    expected = _recomputed(session, None)
    stored = {
        LineKey(r.invoice_id, r.product, r.app, r.region, r.price_id, r.period_start): (
            r.quantity,
            r.unit_price,
            r.amount_cents,
            r.first_usage_at,
            r.last_usage_at,
        )
        for r in session.execute(
            sa.text(
                "SELECT l.invoice_id, l.product, l.app, l.region, l.price_id, l.period_start, "
                "l.quantity, l.unit_price, l.amount_cents, l.first_usage_at, l.last_usage_at "
                "FROM invoice_items l WHERE l.price_id IS NOT NULL"
            )
        )
    }
    prices = _prices(session, {k.price_id for k in [*expected, *stored]})
    diffs: list[UsageDiff] = []
    for key in sorted(set(expected) | set(stored), key=staging.key_order):
        price = prices[key.price_id].unit_price
        agg = expected.get(key)
        want: tuple[object, ...] = (
            (agg.quantity, price, line_amount_cents(agg.quantity, price), agg.first, agg.last)
            if agg
            else ()
        )
        have: tuple[object, ...] = stored.get(key, ())
        if want != have:
            diffs.append(UsageDiff(key.invoice_id, "line", key, want, have))
    for r in session.execute(
        sa.text(
            "SELECT i.id, i.subtotal_cents, i.total_cents, i.line_item_count, "
            "coalesce(sum(l.amount_cents), 0) AS s, count(l.id) AS n FROM invoices i "
            "JOIN usage_drafts d ON d.invoice_id = i.id "
            "LEFT JOIN invoice_items l ON l.invoice_id = i.id "
            "WHERE i.status = 'draft' GROUP BY i.id ORDER BY i.id"
        )
    ):
        want_totals = (int(r.s), int(r.s), int(r.n))
        have_totals = (r.subtotal_cents, r.total_cents, r.line_item_count)
        if want_totals != have_totals:
            diffs.append(UsageDiff(r.id, "totals", None, want_totals, have_totals))
    return diffs


@dataclass(frozen=True)
class ReplayResult:
    invoice_id: int
    lines: int
    subtotal_cents: int


def replay(
    session: Session, *, organization_slug: str, period_start: date, now: datetime
) -> ReplayResult:
    """Rebuild the usage lines of one organization's draft for a period from its events: delete
    them, re-aggregate, re-insert, and recompute the draft's totals from all its lines
    (`invoices.totals`). Raises
    NotFound (no usage draft for that period) or InvoiceNotDraft. Caller commits."""
    org = organizations.by_slug(session, organization_slug)
    mapping = session.get(tables.UsageDraft, (org.id, period_start))
    if mapping is None:
        raise NotFound(f"{organization_slug} has no usage draft for {period_start:%Y-%m}")
    status = session.execute(
        sa.text("SELECT status FROM invoices WHERE id = :id FOR NO KEY UPDATE"),
        {"id": mapping.invoice_id},
    ).scalar_one()
    if status != InvoiceStatus.DRAFT:
        raise InvoiceNotDraft(f"the {period_start:%Y-%m} invoice is {status}; only drafts replay")
    # The audited path (migration 0008): a replay rewrites counted lines, so it leaves a trace.
    session.add(
        tables.UsageAudit(
            reason="usage replay of one draft",
            detail={"invoice_id": mapping.invoice_id, "organization": organization_slug,
                    "period_start": period_start.isoformat()},
        )
    )  # fmt: skip
    session.execute(
        sa.text("DELETE FROM invoice_items WHERE invoice_id = :id AND price_id IS NOT NULL"),
        {"id": mapping.invoice_id},
    )
    totals = _recomputed(session, [mapping.invoice_id])
    staging.add_quantities(session, totals, _prices(session, {k.price_id for k in totals}), now=now)
    # With no events left there is no usage line to add: the totals still follow the deletion.
    redone = invoice_totals.recompute(session, [mapping.invoice_id], now=now)[mapping.invoice_id]
    return ReplayResult(mapping.invoice_id, len(totals), redone.subtotal_cents)
