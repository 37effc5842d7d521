"""Read side: invoice pages with keyset cursors, single invoices, sync health, the viewer."""

from __future__ import annotations

import sqlalchemy as sa
import strawberry
from sqlmodel import col, func, select

from gql.core.context import Info
from gql.core.errors import bad_input
from gql.core.pagination import Edge, PageInfo, check_first, invoice_cursor, parse_invoice_cursor
from gql.invoices.filters import InvoiceFilter, conditions
from gql.invoices.types import Invoice, InvoiceConnection, Organization, SyncHealth, Viewer
from models import tables
from models.errors import DomainError, NotFound

VIEWER_ORGANIZATIONS_MAX = 500


def invoice_page(
    info: Info,
    *,
    first: int,
    after: str | None,
    filter: InvoiceFilter | None,
    organization_id: int | None,
) -> InvoiceConnection:
    """One page, newest billing period first, then newest id.

    Keyset: `(period_start, id) < (cursor)`, served by ix_invoices_organization_id_period_start_id
    (one organization) or ix_invoices_period_start_id (platform).
    """
    ctx = info.context
    check_first(first)
    inv = tables.Invoice
    try:
        where = conditions(filter)
    except DomainError as e:
        raise bad_input(e.message) from None
    scope = organization_id
    if filter and filter.organization_slug:
        try:
            org = ctx.organization_for_viewer(filter.organization_slug)
        except NotFound:
            return _empty()
        if scope is not None and org.id != scope:
            return _empty()
        scope = org.id
    if not ctx.viewer.is_admin:
        if scope is not None and scope != ctx.viewer.organization_id:
            return _empty()
        scope = ctx.viewer.organization_id
        if scope is None:  # a metering token: it posts usage and reads no invoices
            return _empty()
    if scope is not None:
        where.append(col(inv.organization_id) == scope)

    stmt = select(inv).where(*where)
    if after:
        period_start, last_id = parse_invoice_cursor(after)
        stmt = stmt.where(
            sa.tuple_(col(inv.period_start), col(inv.id)) < sa.tuple_(period_start, last_id)
        )
    rows = ctx.session.exec(
        stmt.order_by(col(inv.period_start).desc(), col(inv.id).desc()).limit(first + 1)
    ).all()
    page = rows[:first]
    edges = [
        Edge(cursor=invoice_cursor(r.period_start, r.id or 0), node=Invoice.from_row(r))
        for r in page
    ]

    def count() -> int:
        return int(ctx.session.exec(select(func.count()).select_from(inv).where(*where)).one())

    return InvoiceConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
        ),
        total_count_query=count,
    )


def _empty() -> InvoiceConnection:
    return InvoiceConnection(
        edges=[],
        page_info=PageInfo(has_next_page=False, end_cursor=None),
        total_count_query=lambda: 0,
    )


def sync_health(info: Info, organization_id: int) -> SyncHealth:
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


@strawberry.type
class InvoiceQueries:
    @strawberry.field(description="The caller and the organizations it can see.")
    def viewer(self, info: Info) -> Viewer:
        ctx = info.context
        stmt = select(tables.Organization).order_by(tables.Organization.slug)
        if not ctx.viewer.is_admin:
            stmt = stmt.where(tables.Organization.id == ctx.viewer.organization_id)
        orgs = ctx.session.exec(stmt.limit(VIEWER_ORGANIZATIONS_MAX)).all()
        return Viewer(scope=ctx.viewer.scope, organizations=[Organization(row=o) for o in orgs])

    @strawberry.field(description="An organization by slug; null when missing or not visible.")
    def organization(self, info: Info, slug: str) -> Organization | None:
        try:
            return Organization(row=info.context.organization_for_viewer(slug))
        except NotFound:
            return None

    @strawberry.field(
        description="An invoice by public id (inv_...) or number (ACME-0007); null when missing or not visible."
    )
    def invoice(self, info: Info, id: strawberry.ID) -> Invoice | None:
        try:
            return Invoice.from_row(info.context.invoice_for_viewer(str(id)))
        except NotFound:
            return None

    @strawberry.field(
        description="Invoices visible to the caller, newest billing period first; `first` at most 100."
    )
    def invoices(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        filter: InvoiceFilter | None = None,
    ) -> InvoiceConnection:
        return invoice_page(info, first=first, after=after, filter=filter, organization_id=None)
