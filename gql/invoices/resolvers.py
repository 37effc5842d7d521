"""Read side of invoices: keyset pages and per-organization sync health, used by the root
`invoices` field and by `Organization.invoices` / `Organization.syncHealth`."""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import col, func, select

from gql.core import permissions
from gql.core.context import Info
from gql.core.errors import bad_input
from gql.core.pagination import (
    Edge,
    Window,
    invoice_cursor,
    page,
    page_info,
    parse_invoice_cursor,
)
from gql.invoices.filters import InvoiceFilter, conditions
from gql.invoices.sync_state import SyncHealth
from gql.invoices.types import Invoice, InvoiceConnection
from models import tables
from models.errors import DomainError


def invoice_page(
    info: Info,
    *,
    w: Window,
    filter: InvoiceFilter | None,
    organization_id: int | None,
) -> InvoiceConnection:
    """One page of the invoices the viewer may see, newest billing period first, then newest id;
    `organization_id` narrows it to one organization (the parent of `Organization.invoices`).

    Keyset: `(period_start, id) < (after)` and `> (before)`, read descending for `first` and
    ascending for `last`, served either way by ix_invoices_organization_id_period_start_id (one
    organization) or ix_invoices_period_start_id (platform).
    """
    ctx = info.context
    inv = tables.Invoice
    try:
        where = conditions(filter)
    except DomainError as e:
        raise bad_input(e.message) from None
    where += permissions.visible_to(ctx.viewer, inv.organization_id)
    if organization_id is not None:
        where.append(col(inv.organization_id) == organization_id)
    if filter and filter.organization_slug:
        org = permissions.visible_organization(ctx, filter.organization_slug)
        if org is None:
            return _empty()
        where.append(col(inv.organization_id) == org.id)

    # Result rows, not ORM objects: the page is read-only, and building SQLModel objects cost
    # more than the query (bench/api.py profile).
    key = sa.tuple_(col(inv.period_start), col(inv.id))
    stmt = sa.select(inv.__table__).where(*where)  # type: ignore[attr-defined]
    if w.after:
        stmt = stmt.where(key < sa.tuple_(*parse_invoice_cursor(w.after)))
    if w.before:
        stmt = stmt.where(key > sa.tuple_(*parse_invoice_cursor(w.before)))
    order = (
        (col(inv.period_start).asc(), col(inv.id).asc())
        if w.backward
        else (col(inv.period_start).desc(), col(inv.id).desc())
    )
    rows, more = page(list(ctx.session.execute(stmt.order_by(*order).limit(w.size + 1)).all()), w)
    edges = [
        Edge(cursor=invoice_cursor(r.period_start, r.id), node=Invoice.from_row(r, rows))
        for r in rows
    ]

    def count() -> int:
        return int(ctx.session.exec(select(func.count()).select_from(inv).where(*where)).one())

    return InvoiceConnection(
        edges=edges,
        page_info=page_info([e.cursor for e in edges], more=more, w=w),
        total_count_query=count,
    )


def _empty() -> InvoiceConnection:
    return InvoiceConnection(
        edges=[],
        page_info=page_info([], more=False, w=Window(0, False, None, None)),
        total_count_query=lambda: 0,
    )


def sync_health(info: Info, organization_id: int) -> SyncHealth:
    """Invoice counts per sync state of one organization the viewer already sees."""
    inv, sync = tables.Invoice, tables.InvoiceSync
    state = func.coalesce(col(sync.state), "not_required")
    rows = info.context.session.execute(
        select(
            state,
            func.count(),
            func.min(sa.case((col(sync.state) != "synced", col(inv.finalized_at)))),
        )
        .select_from(inv)
        .outerjoin(sync, col(sync.invoice_id) == col(inv.id))
        .where(col(inv.organization_id) == organization_id)
        .group_by(state)
    ).all()
    counts = {r[0]: int(r[1]) for r in rows}
    oldest = min((r[2] for r in rows if r[2] is not None), default=None)
    return SyncHealth(
        not_required=counts.get("not_required", 0),
        pending=counts.get("pending", 0),
        syncing=counts.get("syncing", 0),
        synced=counts.get("synced", 0),
        retrying=counts.get("retrying", 0),
        failed=counts.get("failed", 0),
        oldest_unsynced_since=oldest,
    )
