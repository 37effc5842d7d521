"""GraphQL object types over the rows of models.tables. Every field carries a description."""

from __future__ import annotations

from datetime import date, datetime
from typing import TYPE_CHECKING, Annotated, Any, cast

import strawberry
from strawberry.scalars import JSON

from gql.core.context import Info
from gql.core.pagination import Edge, PageInfo, check_first, id_cursor, parse_id_cursor
from gql.core.scalars import BigInt, DecimalString
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

    @strawberry.field(description='Human-readable amount, such as "$1,234.56".')
    def formatted(self) -> str:
        return format_money(int(self.cents), self.currency)


def money(cents: int, currency: str) -> Money:
    return Money(cents=BigInt(cents), currency=currency.strip())


@strawberry.type(description="One line of an invoice: what the money was for.")
class LineItem:
    row: strawberry.Private[tables.InvoiceItem]
    currency: strawberry.Private[str]

    @strawberry.field(description="Opaque public id (li_...).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.public_id)

    @strawberry.field(description="Usage, subscription, one-off, credit or adjustment.")
    def kind(self) -> tables.LineItemKind:
        return tables.LineItemKind(self.row.kind)

    @strawberry.field(description="What the line is for, in words.")
    def description(self) -> str:
        return self.row.description

    @strawberry.field(description="Product code, such as machines-shared-cpu or egress.")
    def product(self) -> str:
        return self.row.product

    @strawberry.field(description="App the usage belongs to, if any.")
    def app(self) -> str | None:
        return self.row.app

    @strawberry.field(description="Region code, such as ams or iad, if any.")
    def region(self) -> str | None:
        return self.row.region

    @strawberry.field(description="Unit of the quantity: second, GB, GB-month, month...")
    def unit(self) -> str:
        return self.row.unit

    @strawberry.field(description="Quantity in `unit`, exact (up to 9 decimal places).")
    def quantity(self) -> DecimalString:
        return DecimalString(str(self.row.quantity))

    @strawberry.field(
        description="Price of one unit in minor units (cents), exact, up to 12 decimal places."
    )
    def unit_price(self) -> DecimalString:
        return DecimalString(str(self.row.unit_price))

    @strawberry.field(
        description="quantity x unitPrice rounded half-even to a whole minor unit, once."
    )
    def amount(self) -> Money:
        return money(self.row.amount_cents, self.currency)

    @strawberry.field(description="Start of the service period (inclusive), if given.")
    def period_start(self) -> date | None:
        return self.row.period_start

    @strawberry.field(description="End of the service period (exclusive), if given.")
    def period_end(self) -> date | None:
        return self.row.period_end

    @strawberry.field(description="Free-form metadata given when the line was added.")
    def metadata(self) -> JSON:
        return cast(JSON, self.row.metadata_)


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
    row: strawberry.Private[tables.InvoiceSync | None]

    @strawberry.field(
        description="NOT_REQUIRED for drafts; then PENDING, SYNCING, SYNCED, RETRYING or FAILED."
    )
    def status(self) -> tables.SyncStatus:
        return tables.SyncStatus(self.row.state) if self.row else tables.SyncStatus.NOT_REQUIRED

    @strawberry.field(description="Attempts since the last reset (a forced resync resets them).")
    def attempts(self) -> int:
        return self.row.attempts if self.row else 0

    @strawberry.field(description="When the last attempt started.")
    def last_attempt_at(self) -> datetime | None:
        return self.row.last_attempt_at if self.row else None

    @strawberry.field(description="When the next attempt is due (PENDING and RETRYING only).")
    def next_attempt_at(self) -> datetime | None:
        if self.row and self.row.state in ("pending", "retrying"):
            return self.row.next_attempt_at
        return None

    @strawberry.field(description="When the invoice was last confirmed identical on Stripe.")
    def synced_at(self) -> datetime | None:
        return self.row.synced_at if self.row else None

    @strawberry.field(description="The last error, while the invoice is RETRYING or FAILED.")
    def last_error(self) -> SyncError | None:
        r = self.row
        if (
            r is None
            or r.state not in ("retrying", "failed")
            or not (r.last_error_class or r.last_error_message)
        ):
            return None
        return SyncError(
            error_class=r.last_error_class,
            code=r.last_error_code,
            message=r.last_error_message,
            http_status=r.last_error_http_status,
            request_id=r.last_error_request_id,
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

    @strawberry.field(description="Opaque public id (inv_...).")
    def id(self) -> strawberry.ID:
        return strawberry.ID(self.row.public_id)

    @strawberry.field(
        description="Human number such as ACME-0007, gap-free per organization; null for drafts."
    )
    def number(self) -> str | None:
        return self.row.number

    @strawberry.field(description="DRAFT, OPEN, PAID, VOID or UNCOLLECTIBLE.")
    def status(self) -> tables.InvoiceStatus:
        return tables.InvoiceStatus(self.row.status)

    @strawberry.field(description="ISO 4217 currency code, upper case.")
    def currency(self) -> str:
        return self.row.currency.strip()

    @strawberry.field(description="First day of the billing period (inclusive, UTC).")
    def period_start(self) -> date:
        return self.row.period_start

    @strawberry.field(description="Day after the billing period (exclusive, UTC).")
    def period_end(self) -> date:
        return self.row.period_end

    @strawberry.field(description="When the invoice was finalized (it is immutable since).")
    def finalized_at(self) -> datetime | None:
        return self.row.finalized_at

    @strawberry.field(description="When payment is due.")
    def due_date(self) -> date | None:
        return self.row.due_date

    @strawberry.field(description="When the invoice was marked paid.")
    def paid_at(self) -> datetime | None:
        return self.row.paid_at

    @strawberry.field(description="When the invoice was voided.")
    def voided_at(self) -> datetime | None:
        return self.row.voided_at

    @strawberry.field(description="When the invoice was marked uncollectible.")
    def marked_uncollectible_at(self) -> datetime | None:
        return self.row.marked_uncollectible_at

    @strawberry.field(description="Sum of the line amounts.")
    def subtotal(self) -> Money:
        return money(self.row.subtotal_cents, self.row.currency)

    @strawberry.field(description="Amount due: the subtotal (credits are lines of their own).")
    def total(self) -> Money:
        return money(self.row.total_cents, self.row.currency)

    @strawberry.field(description="Number of line items.")
    def line_item_count(self) -> int:
        return self.row.line_item_count

    @strawberry.field(description="The Stripe invoice id, once the sync created it.")
    def stripe_invoice_id(self) -> str | None:
        return self.row.stripe_invoice_id

    @strawberry.field(description="When the draft was created.")
    def created_at(self) -> datetime | None:
        return self.row.created_at

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
            Edge(cursor=id_cursor(r.id or 0), node=LineItem(row=r, currency=self.row.currency))
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
        return SyncState(invoice_id=self.row.id, row=row)


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
