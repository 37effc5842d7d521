"""GraphQL types of organizations and of the caller. Every field carries a description.

`Organization` resolves its fields from a `tables.Organization` row, which resolvers return as
is (declaring `graphql_type=Organization`): that way `Invoice.organization` can name this type
lazily, without importing it, while this module imports the invoice and summary types it lists.
"""

from __future__ import annotations

from typing import Annotated

import strawberry

from gql.core.context import Info
from gql.core.money import CurrencyFilter
from gql.core.pagination import After, Before, First, Last, window
from gql.cycle.queries import spend_alerts
from gql.cycle.types import SpendAlert
from gql.invoices.credit_notes import CreditNoteConnection, resolve_organization_credit_notes
from gql.invoices.filters import Filter
from gql.invoices.resolvers import invoice_page, sync_health
from gql.invoices.sync_state import SyncHealth
from gql.invoices.types import InvoiceConnection
from gql.organizations.enums import TokenScope
from gql.summary.resolvers import summary_for
from gql.summary.types import MonthlySummary, Years
from gql.usage.queries import upcoming_invoice
from gql.usage.types import UpcomingInvoice
from models import tables

Row = strawberry.Parent[tables.Organization]


def _id(parent: Row) -> strawberry.ID:
    return strawberry.ID(parent.public_id)


def _default_currency(parent: Row) -> str:
    return parent.default_currency.strip()


def _invoices(
    parent: Row,
    info: Info,
    first: First = None,
    after: After = None,
    filter: Filter = None,
    last: Last = None,
    before: Before = None,
) -> InvoiceConnection:
    assert parent.id is not None
    return invoice_page(
        info, w=window(first, after, last, before), filter=filter, organization_id=parent.id
    )


def _monthly_summary(
    parent: Row,
    info: Info,
    years: Years,
    currency: CurrencyFilter = None,
) -> list[MonthlySummary]:
    assert parent.id is not None
    return summary_for(
        info,
        scope_id=parent.id,
        years=years,
        currency=currency,
        default_currency=parent.default_currency,
    )


def _upcoming_invoice(
    parent: Row,
    info: Info,
    period: Annotated[
        str | None,
        strawberry.argument(
            description='The month, as "2026-11"; default: the current month (UTC). Any month '
            "whose usage draft is not finalized yet."
        ),
    ] = None,
) -> UpcomingInvoice:
    assert parent.id is not None
    return upcoming_invoice(info, parent.id, period)


def _sync_health(parent: Row, info: Info) -> SyncHealth:
    assert parent.id is not None
    return sync_health(info, parent.id)


def _spend_alerts(parent: Row, info: Info) -> list[SpendAlert]:
    assert parent.id is not None
    return spend_alerts(info, parent.id)


@strawberry.type(description="A paying customer of the platform.")
class Organization:
    id: strawberry.ID = strawberry.field(resolver=_id, description="Opaque public id (org_...).")
    slug: str = strawberry.field(description="URL-safe unique name.")
    name: str = strawberry.field(description="Display name.")
    billing_email: str = strawberry.field(description="Where invoices are e-mailed.")
    default_currency: str = strawberry.field(
        resolver=_default_currency, description="Currency of new invoices unless stated."
    )
    invoice_prefix: str = strawberry.field(
        description="Prefix of invoice numbers, such as ACME in ACME-0007."
    )
    invoices: InvoiceConnection = strawberry.field(
        resolver=_invoices,
        description="This organization's invoices, newest first; `first` at most 100.",
    )
    credit_notes: CreditNoteConnection = strawberry.field(
        resolver=resolve_organization_credit_notes,
        description="The organization's credit notes, newest first; pages of at most 100.",
    )
    monthly_summary: list[MonthlySummary] = strawberry.field(
        resolver=_monthly_summary,
        description="Every month of the given years (at most 10), per currency, zeros included.",
    )
    upcoming_invoice: UpcomingInvoice = strawberry.field(
        resolver=_upcoming_invoice,
        description=(
            "The invoice the month-end close would produce for a period if it ended now (usage, "
            "recurring and one-off lines, totals, breakdowns, a projection); never null. "
            "PERIOD_CLOSED for a finalized period."
        ),
    )
    sync_health: SyncHealth = strawberry.field(
        resolver=_sync_health,
        description="Invoices per sync state: is Stripe in step with us?",
    )
    spend_alerts: list[SpendAlert] = strawberry.field(
        resolver=_spend_alerts,
        description="Spend thresholds (setSpendAlert), smallest first, with their latest firing.",
    )


@strawberry.type(description="The caller: a member of one organization, or a platform admin.")
class Viewer:
    scope: TokenScope = strawberry.field(description="MEMBER or ADMIN.")
    organization_rows: strawberry.Private[list[tables.Organization]]

    @strawberry.field(
        description="Organizations visible to the caller (all of them, by slug, for admins).",
        graphql_type=list[Organization],
    )
    def organizations(self) -> list[tables.Organization]:
        return self.organization_rows

    @strawberry.field(description="True for platform admin tokens.")
    def is_admin(self) -> bool:
        return self.scope == TokenScope.ADMIN


__all__ = ["Organization", "Viewer"]
