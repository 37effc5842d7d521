"""GraphQL object types over the rows of models.tables. Every field carries a description."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

from gql.core.context import Info
from gql.core.pagination import Edge, PageInfo, check_first, id_cursor, parse_id_cursor
from gql.core.scalars import BigInt, DecimalString
from gql.invoices.payment import InvoicePayment, resolve_payment, resolve_remote_due_date
from models import tables
from models.money import format_money

if TYPE_CHECKING:
    from gql.invoices.filters import InvoiceFilter
    from gql.summary.types import MonthlySummary

InvoiceStatus = strawberry.enum(
    tables.InvoiceStatus, name="InvoiceStatus", description="Lifecycle of an invoice."
)
LineItemKind = strawberry.enum(
    tables.LineItemKind, name="LineItemKind", description="What kind of charge or credit a line is."
)
SyncStatus = strawberry.enum(
    tables.SyncStatus, name="SyncStatus", description="Where an invoice stands with Stripe."
)
TokenScope = strawberry.enum(
    tables.TokenScope, name="TokenScope", description="What a token may see."
)

HISTORY_MAX = 50


@strawberry.type(description="An amount of money: exact minor units plus the currency.")
class Money:
    cents: BigInt = strawberry.field(
        description="Amount in the currency's minor unit (cents; yen for JPY), as a string."
    )
    currency: str = strawberry.field(description="ISO 4217 code, upper case.")
    formatted: str = strawberry.field(description='Human-readable amount, such as "$1,234.56".')


def money(cents: int, currency: str) -> Money:
    code = currency.strip()
    return Money(cents=BigInt(cents), currency=code, formatted=format_money(cents, code))


# Scalar fields are plain attributes filled from the row once, not resolver methods: a page of
# 20 invoices x 10 lines has thousands of fields, and a resolver call per field cost 4x the
# execution time of plain attributes (measured with bench/api.py).
@strawberry.type(description="One line of an invoice: what the money was for.")
class LineItem:
    id: strawberry.ID = strawberry.field(description="Opaque public id (li_...).")
    kind: tables.LineItemKind = strawberry.field(
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
        description="quantity x unitPrice rounded half-even to a whole minor unit, once."
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
        """From an InvoiceItem or a result row with the same attribute names."""
        return cls(
            id=strawberry.ID(row.public_id),
            kind=tables.LineItemKind(row.kind),
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
        )


@strawberry.type(description="A page of line items, in the order they were added.")
class LineItemConnection:
    edges: list[Edge[LineItem]] = strawberry.field(description="Rows with their cursors.")
    page_info: PageInfo = strawberry.field(description="Where this page ends.")
    total_count: int = strawberry.field(description="Line items on the invoice.")

    @strawberry.field(description="The rows, without cursors.")
    def nodes(self) -> list[LineItem]:
        return [e.node for e in self.edges]


@strawberry.type(description="Why the last sync attempt failed, as Stripe or the network said.")
class SyncError:
    error_class: str | None = strawberry.field(
        description="Error class, such as InvalidRequestError, APIConnectionError or MISMATCH."
    )
    code: str | None = strawberry.field(
        description="Stripe's error code, such as resource_missing."
    )
    message: str | None = strawberry.field(description="Stripe's (or our) message.")
    http_status: int | None = strawberry.field(description="HTTP status of Stripe's answer.")
    request_id: str | None = strawberry.field(description="Stripe request id, for Stripe support.")


@strawberry.type(description="One step of one sync attempt.")
class SyncAttempt:
    row: strawberry.Private[tables.SyncAttempt]

    @strawberry.field(description="When the step started.")
    def started_at(self) -> datetime:
        return self.row.started_at

    @strawberry.field(description="Attempt number the step belonged to.")
    def attempt(self) -> int:
        return self.row.attempt

    @strawberry.field(description="Step: customer, create, lines, finalize, verify, void...")
    def step(self) -> str:
        return self.row.step

    @strawberry.field(description="ok, retry, failed or paused.")
    def outcome(self) -> str:
        return self.row.outcome

    @strawberry.field(description="Error class, if the step failed.")
    def error_class(self) -> str | None:
        return self.row.error_class

    @strawberry.field(description="Stripe's error code, if any.")
    def error_code(self) -> str | None:
        return self.row.error_code

    @strawberry.field(description="Error message, if any.")
    def error_message(self) -> str | None:
        return self.row.error_message

    @strawberry.field(description="HTTP status of Stripe's answer, if any.")
    def http_status(self) -> int | None:
        return self.row.http_status

    @strawberry.field(description="Stripe request id, if any.")
    def request_id(self) -> str | None:
        return self.row.request_id

    @strawberry.field(description="Duration of the step in milliseconds.")
    def duration_ms(self) -> int:
        return self.row.duration_ms


@strawberry.type(description="Where an invoice stands with Stripe.")
class SyncState:
    invoice_id: strawberry.Private[int]
    status: tables.SyncStatus = strawberry.field(
        description="NOT_REQUIRED for drafts; then PENDING, SYNCING, SYNCED, RETRYING or FAILED."
    )
    attempts: int = strawberry.field(
        description="Attempts since the last reset (a forced resync resets them)."
    )
    last_attempt_at: datetime | None = strawberry.field(
        description="When the last attempt started."
    )
    next_attempt_at: datetime | None = strawberry.field(
        description="When the next attempt is due (PENDING and RETRYING only)."
    )
    synced_at: datetime | None = strawberry.field(
        description="When the invoice was last confirmed identical on Stripe."
    )
    last_error: SyncError | None = strawberry.field(
        description="The last error, while the invoice is RETRYING or FAILED."
    )
    remote_due_date: date | None = strawberry.field(
        resolver=resolve_remote_due_date,
        description="Due date sent to Stripe: dueDate, or sync day + 14 days if synced late.",
    )

    @classmethod
    def from_row(cls, invoice_id: int, r: tables.InvoiceSync | None) -> SyncState:
        if r is None:
            return cls(
                invoice_id=invoice_id,
                status=tables.SyncStatus.NOT_REQUIRED,
                attempts=0,
                last_attempt_at=None,
                next_attempt_at=None,
                synced_at=None,
                last_error=None,
            )
        error = None
        if r.state in ("retrying", "failed") and (r.last_error_class or r.last_error_message):
            error = SyncError(
                error_class=r.last_error_class,
                code=r.last_error_code,
                message=r.last_error_message,
                http_status=r.last_error_http_status,
                request_id=r.last_error_request_id,
            )
        return cls(
            invoice_id=invoice_id,
            status=tables.SyncStatus(r.state),
            attempts=r.attempts,
            last_attempt_at=r.last_attempt_at,
            next_attempt_at=r.next_attempt_at if r.state in ("pending", "retrying") else None,
            synced_at=r.synced_at,
            last_error=error,
        )

    @strawberry.field(
        description=f"The most recent attempt steps, newest first (at most {HISTORY_MAX})."
    )
    async def history(self, info: Info, last: int = 10) -> list[SyncAttempt]:
        rows = await info.context.loaders.history.load(
            (self.invoice_id, max(0, min(last, HISTORY_MAX)))
        )
        return [SyncAttempt(row=r) for r in rows]


@strawberry.type(
    description="An invoice: a draft collecting lines, or a finalized, immutable bill."
)
class Invoice:
    row: strawberry.Private[tables.Invoice]
    id: strawberry.ID = strawberry.field(description="Opaque public id (inv_...).")
    number: str | None = strawberry.field(
        description="Human number such as ACME-0007, gap-free per organization; null for drafts."
    )
    status: tables.InvoiceStatus = strawberry.field(
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
    def from_row(cls, r: tables.Invoice) -> Invoice:
        currency = r.currency.strip()
        return cls(
            row=r,
            id=strawberry.ID(r.public_id),
            number=r.number,
            status=tables.InvoiceStatus(r.status),
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

    @strawberry.field(description="Line items in the order they were added; `first` at most 100.")
    async def line_items(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> LineItemConnection:
        check_first(first)
        after_id = parse_id_cursor(after) if after else None
        assert self.row.id is not None
        rows = await info.context.loaders.line_items.load((self.row.id, first + 1, after_id))
        page = rows[:first]
        edges = [
            Edge(cursor=id_cursor(r.id or 0), node=LineItem.from_row(r, self.currency))
            for r in page
        ]
        return LineItemConnection(
            edges=edges,
            page_info=PageInfo(
                has_next_page=len(rows) > first, end_cursor=edges[-1].cursor if edges else None
            ),
            total_count=self.row.line_item_count,
        )

    @strawberry.field(description="The organization billed.")
    async def organization(self, info: Info) -> Organization:
        org = await info.context.loaders.organization.load(self.row.organization_id)
        assert org is not None
        return Organization(row=org)

    @strawberry.field(description="Where this invoice stands with Stripe.")
    async def sync_state(self, info: Info) -> SyncState:
        assert self.row.id is not None
        row = None
        if self.row.status != tables.InvoiceStatus.DRAFT:
            row = await info.context.loaders.sync_state.load(self.row.id)
        return SyncState.from_row(self.row.id, row)


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


@strawberry.type(description="How many of an organization's invoices are in each sync state.")
class SyncHealth:
    not_required: int = strawberry.field(description="Drafts.")
    pending: int = strawberry.field(description="Waiting for a worker.")
    syncing: int = strawberry.field(description="Held by a worker now.")
    synced: int = strawberry.field(description="On Stripe and verified.")
    retrying: int = strawberry.field(description="Waiting to retry after a transient error.")
    failed: int = strawberry.field(description="Stopped; an operator should look.")
    oldest_unsynced_since: datetime | None = strawberry.field(
        description="Finalization time of the oldest invoice not yet synced, if any."
    )


@strawberry.type(description="A paying customer of the platform.")
class Organization:
    row: strawberry.Private[tables.Organization]

    @strawberry.field(description="Opaque public id (org_...).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.public_id)

    @strawberry.field(description="URL-safe unique name.")
    def slug(self) -> str:
        return self.row.slug

    @strawberry.field(description="Display name.")
    def name(self) -> str:
        return self.row.name

    @strawberry.field(description="Where invoices are e-mailed.")
    def billing_email(self) -> str:
        return self.row.billing_email

    @strawberry.field(description="Currency of new invoices unless stated.")
    def default_currency(self) -> str:
        return self.row.default_currency.strip()

    @strawberry.field(description="Prefix of invoice numbers, such as ACME in ACME-0007.")
    def invoice_prefix(self) -> str:
        return self.row.invoice_prefix

    @strawberry.field(
        description="This organization's invoices, newest first; `first` at most 100."
    )
    def invoices(
        self,
        info: Info,
        first: int = 20,
        after: str | None = None,
        filter: Annotated[InvoiceFilter, strawberry.lazy("gql.invoices.filters")] | None = None,
    ) -> InvoiceConnection:
        from gql.invoices.queries import invoice_page

        assert self.row.id is not None
        return invoice_page(
            info, first=first, after=after, filter=filter, organization_id=self.row.id
        )

    @strawberry.field(
        description="Every month of the given years (at most 10), per currency, zeros included."
    )
    def monthly_summary(
        self, info: Info, years: list[int], currency: str | None = None
    ) -> list[Annotated[MonthlySummary, strawberry.lazy("gql.summary.types")]]:
        from gql.summary.queries import summary_for

        assert self.row.id is not None
        return summary_for(
            info,
            scope_id=self.row.id,
            years=years,
            currency=currency,
            default_currency=self.row.default_currency,
        )

    @strawberry.field(description="Invoices per sync state: is Stripe in step with us?")
    def sync_health(self, info: Info) -> SyncHealth:
        from gql.invoices.queries import sync_health

        assert self.row.id is not None
        return sync_health(info, self.row.id)


@strawberry.type(description="The caller: a member of one organization, or a platform admin.")
class Viewer:
    scope: tables.TokenScope = strawberry.field(description="MEMBER or ADMIN.")
    organizations: list[Organization] = strawberry.field(
        description="Organizations visible to the caller (all of them, by slug, for admins)."
    )

    @strawberry.field(description="True for platform admin tokens.")
    def is_admin(self) -> bool:
        return self.scope == tables.TokenScope.ADMIN
