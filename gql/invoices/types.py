"""GraphQL types of invoices and their line items, over the rows of models.tables.
Every field carries a description."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

from gql.core.context import Info
from gql.core.money import Money, money
from gql.core.pagination import (
    After,
    Before,
    Edge,
    First,
    Last,
    PageInfo,
    id_cursor,
    page_info,
    parse_id_cursor,
    window,
)
from gql.core.pagination import page as page_of  # `page` is an Invoice field here
from gql.core.scalars import DecimalString
from gql.invoices.credit_notes import (
    CreditedByInvoiceIdLoader,
    CreditNote,
    CreditNotesByInvoiceIdLoader,
)
from gql.invoices.dataloaders import LineItemsByInvoiceIdLoader, SyncStateByInvoiceIdLoader
from gql.invoices.enums import InvoiceStatus, LineItemKind
from gql.invoices.payment import InvoicePayment, resolve_payment
from gql.invoices.sync_state import SyncState
from gql.organizations.dataloaders import OrganizationByIdLoader
from models import tables
from models.invoices import credit_notes
from models.units import DisplayUnit, to_display

if TYPE_CHECKING:  # only for strawberry.lazy: gql.organizations.types imports this module
    from gql.organizations.types import Organization


# Scalar fields are plain attributes filled from the row once, not resolver methods: a page of
# 20 invoices x 10 lines has thousands of fields, and a resolver call per field cost 4x the
# execution time of plain attributes (measured with bench/api.py).
@strawberry.type(description="One line of an invoice: what the money was for.")
class LineItem:
    id: strawberry.ID = strawberry.field(description="Opaque public id (li_...).")
    kind: LineItemKind = strawberry.field(
        description="Usage, subscription, one-off, credit or adjustment."
    )
    description: str = strawberry.field(description="What the line is for, in words.")
    product: str = strawberry.field(
        description="Product code, such as machines-shared-cpu or egress."
    )
    app: str | None = strawberry.field(description="App the usage belongs to, if any.")
    region: str | None = strawberry.field(description="Region code, such as ams or iad, if any.")
    unit: str = strawberry.field(description="Unit of the quantity: second, GB, GB-month, month...")
    quantity: DecimalString = strawberry.field(
        description="Quantity in `unit`, exact (up to 9 decimal places)."
    )
    unit_price: DecimalString = strawberry.field(
        description="Price of one unit in minor units (cents), exact, up to 12 decimal places."
    )
    amount: Money = strawberry.field(
        description="The quantity times unitPrice, rounded half-even to a whole minor unit, once."
    )
    display_quantity: DecimalString = strawberry.field(
        description="The quantity in displayUnit, as people read it: quantity / the product's "
        "display factor (2,592,000 GB-seconds per GB-month), rounded half-even to 6 decimal "
        "places, trailing zeros dropped; the quantity itself when the product has no display "
        "unit. Exact decimal text, never a float."
    )
    display_unit: str = strawberry.field(
        description="The unit people read (GB-month, vCPU-month), or `unit` when the product "
        "has no display unit."
    )
    display_unit_price: DecimalString = strawberry.field(
        description="Minor units (cents) per displayUnit: unitPrice x the display factor, rounded "
        "half-even to 4 decimal places (70 for 0.000027006173 per second over a 30-day month). "
        "For reading only: amount is computed from the exact stored values."
    )
    period_start: date | None = strawberry.field(
        description="Start of the service period (inclusive), if given."
    )
    period_end: date | None = strawberry.field(
        description="End of the service period (exclusive), if given."
    )
    metadata: JSON = strawberry.field(
        description="Free-form metadata given when the line was added."
    )

    @classmethod
    def from_row(cls, row: Any, currency: str) -> LineItem:
        """From an InvoiceItem or a result row with the same attribute names; a row that also
        has display_unit and display_factor (its price version's, LineItemsByInvoiceIdLoader)
        is read in that unit (models/units.py)."""
        unit, factor = getattr(row, "display_unit", None), getattr(row, "display_factor", None)
        display = DisplayUnit(unit, factor) if unit is not None and factor is not None else None
        shown = to_display(row.quantity, row.unit_price, row.unit, display)
        return cls(
            id=strawberry.ID(row.public_id),
            kind=LineItemKind(row.kind),
            description=row.description,
            product=row.product,
            app=row.app,
            region=row.region,
            unit=row.unit,
            quantity=DecimalString(str(row.quantity)),
            unit_price=DecimalString(str(row.unit_price)),
            amount=money(row.amount_cents, currency),
            period_start=row.period_start,
            period_end=row.period_end,
            metadata=cast(JSON, row.metadata_),
            display_quantity=DecimalString(str(shown.quantity)),
            display_unit=shown.unit,
            display_unit_price=DecimalString(str(shown.unit_price)),
        )


@strawberry.type(description="A page of line items, in the order they were added.")
class LineItemConnection:
    edges: list[Edge[LineItem]] = strawberry.field(description="Rows with their cursors.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")
    total_count: int = strawberry.field(description="Line items on the invoice.")

    @strawberry.field(description="The rows, without cursors.")
    def nodes(self) -> list[LineItem]:
        return [e.node for e in self.edges]


@strawberry.type(
    description="An invoice: a draft collecting lines, or a finalized, immutable bill."
)
class Invoice:
    # An Invoice row or a result row with its attribute names (pages read rows, not objects).
    row: strawberry.Private[Any]
    # The rows of the page this invoice came in (itself included): the keys its loaders batch.
    page: strawberry.Private[Sequence[Any]]
    id: strawberry.ID = strawberry.field(description="Opaque public id (inv_...).")
    number: str | None = strawberry.field(
        description="Human number such as ACME-0007, gap-free per organization; null for drafts."
    )
    status: InvoiceStatus = strawberry.field(
        description="DRAFT, OPEN, PAID, VOID or UNCOLLECTIBLE."
    )
    currency: str = strawberry.field(description="ISO 4217 currency code, upper case.")
    period_start: date = strawberry.field(
        description="First day of the billing period (inclusive, UTC)."
    )
    period_end: date = strawberry.field(
        description="Day after the billing period (exclusive, UTC)."
    )
    finalized_at: datetime | None = strawberry.field(
        description="When the invoice was finalized (it is immutable since)."
    )
    due_date: date | None = strawberry.field(description="When payment is due.")
    paid_at: datetime | None = strawberry.field(description="When the invoice was marked paid.")
    voided_at: datetime | None = strawberry.field(description="When the invoice was voided.")
    marked_uncollectible_at: datetime | None = strawberry.field(
        description="When the invoice was marked uncollectible."
    )
    subtotal: Money = strawberry.field(description="Sum of the line amounts.")
    total: Money = strawberry.field(
        description="Amount due: the subtotal (credits are lines of their own)."
    )
    line_item_count: int = strawberry.field(description="Number of line items.")
    stripe_invoice_id: str | None = strawberry.field(
        description="The Stripe invoice id, once the sync created it."
    )
    created_at: datetime | None = strawberry.field(description="When the draft was created.")
    payment: InvoicePayment | None = strawberry.field(
        resolver=resolve_payment, description="Collection on Stripe; null for drafts."
    )

    @classmethod
    def from_row(cls, r: Any, page: Sequence[Any] | None = None) -> Invoice:
        """From an Invoice or a result row; `page` is the list it is one of, if any."""
        currency = r.currency.strip()
        return cls(
            row=r,
            page=page if page is not None else (r,),
            id=strawberry.ID(r.public_id),
            number=r.number,
            status=InvoiceStatus(r.status),
            currency=currency,
            period_start=r.period_start,
            period_end=r.period_end,
            finalized_at=r.finalized_at,
            due_date=r.due_date,
            paid_at=r.paid_at,
            voided_at=r.voided_at,
            marked_uncollectible_at=r.marked_uncollectible_at,
            subtotal=money(r.subtotal_cents, currency),
            total=money(r.total_cents, currency),
            line_item_count=r.line_item_count,
            stripe_invoice_id=r.stripe_invoice_id,
            created_at=r.created_at,
        )

    @strawberry.field(description="Line items in the order they were added; pages of at most 100.")
    def line_items(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        last: Last = None,
        before: Before = None,
    ) -> LineItemConnection:
        w = window(first, after, last, before)
        shape = (
            w.size + 1,
            parse_id_cursor(w.after) if w.after else None,
            parse_id_cursor(w.before) if w.before else None,
            w.backward,
        )
        # A draft batches with the page's drafts only: finalized invoices' lines are usually
        # answered from the subtree cache (gql/core/subtree_cache.py) without asking.
        draft = self.row.status == InvoiceStatus.DRAFT
        siblings = [r for r in self.page if not draft or r.status == InvoiceStatus.DRAFT]
        rows, more = page_of(
            info.context.loader(LineItemsByInvoiceIdLoader).load(
                (self.row.id, *shape), [(r.id, *shape) for r in siblings]
            ),
            w,
        )
        edges = [
            Edge(cursor=id_cursor(r.id or 0), node=LineItem.from_row(r, self.currency))
            for r in rows
        ]
        return LineItemConnection(
            edges=edges,
            page_info=page_info([e.cursor for e in edges], more=more, w=w),
            total_count=self.row.line_item_count,
        )

    # Organization is named lazily: its type module lists this organization's invoices, so it
    # imports this one. The resolver returns the row; Organization resolves its fields from it.
    @strawberry.field(
        description="The organization billed.",
        graphql_type=Annotated["Organization", strawberry.lazy("gql.organizations.types")],
    )
    def organization(self, info: Info) -> tables.Organization:
        org = info.context.loader(OrganizationByIdLoader).load(
            self.row.organization_id, [r.organization_id for r in self.page]
        )
        assert org is not None
        return org

    def _amounts(self, info: Info) -> credit_notes.InvoiceAmounts:
        credited = info.context.loader(CreditedByInvoiceIdLoader).load(
            self.row.id, [r.id for r in self.page]
        )
        return credit_notes.invoice_amounts(self.row, credited)

    @strawberry.field(
        description="Sum of the issued (not void) credit notes' totals; counted in the month of "
        "this invoice's period by monthlySummary.credited."
    )
    def credited_total(self, info: Info) -> Money:
        return money(self._amounts(info).credited_cents, self.currency)

    @strawberry.field(
        description="What the customer paid, net of the refunds and balance credits of credit "
        "notes issued after payment: total - creditedTotal for a PAID invoice, else 0."
    )
    def amount_paid(self, info: Info) -> Money:
        return money(self._amounts(info).paid_cents, self.currency)

    @strawberry.field(
        description="What is still owed: total - creditedTotal - amountPaid (0 for PAID and "
        "VOID invoices)."
    )
    def amount_due(self, info: Info) -> Money:
        return money(self._amounts(info).due_cents, self.currency)

    @strawberry.field(description="Credit notes issued against this invoice, oldest first.")
    def credit_notes(self, info: Info) -> list[CreditNote]:
        if self.row.status == InvoiceStatus.DRAFT:
            return []
        rows = info.context.loader(CreditNotesByInvoiceIdLoader).load(
            self.row.id, [r.id for r in self.page if r.status != InvoiceStatus.DRAFT]
        )
        return [CreditNote.from_row(r, rows) for r in rows]

    def _synced_row(self, info: Info) -> Any:
        if self.row.status == InvoiceStatus.DRAFT:
            return None
        return info.context.loader(SyncStateByInvoiceIdLoader).load(
            self.row.id, [r.id for r in self.page if r.status != InvoiceStatus.DRAFT]
        )

    @strawberry.field(
        description="Stripe's page where the customer pays this invoice (and sees it paid); "
        "null for drafts and until the sync has finalized it on Stripe."
    )
    def hosted_invoice_url(self, info: Info) -> str | None:
        row = self._synced_row(info)
        return row.hosted_invoice_url if row is not None else None

    @strawberry.field(
        description="Stripe's PDF of this invoice; null for drafts and until the sync has "
        "finalized it on Stripe."
    )
    def pdf_url(self, info: Info) -> str | None:
        row = self._synced_row(info)
        return row.invoice_pdf_url if row is not None else None

    @strawberry.field(description="Where this invoice stands with Stripe.")
    def sync_state(self, info: Info) -> SyncState:
        row = None
        if self.row.status != InvoiceStatus.DRAFT:
            row = info.context.loader(SyncStateByInvoiceIdLoader).load(
                self.row.id, [r.id for r in self.page if r.status != InvoiceStatus.DRAFT]
            )
        return SyncState.from_row(self.row.id, row, [r.id for r in self.page])


@strawberry.type(description="A page of invoices, newest billing period first.")
class InvoiceConnection:
    edges: list[Edge[Invoice]] = strawberry.field(description="Rows with their cursors.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")
    total_count_query: strawberry.Private[Any]

    @strawberry.field(description="The rows, without cursors.")
    def nodes(self) -> list[Invoice]:
        return [e.node for e in self.edges]

    @strawberry.field(
        description="Invoices matching the filter (one extra query; ask only when shown)."
    )
    def total_count(self) -> int:
        return int(self.total_count_query())
