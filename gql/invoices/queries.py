"""Root query fields of invoices: one invoice by id or number, and pages of them."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gql.core import permissions
from gql.core.context import Info
from gql.core.pagination import After, Before, First, Last, window
from gql.core.permissions import IsAuthenticated
from gql.invoices.filters import Filter
from gql.invoices.resolvers import invoice_page
from gql.invoices.types import Invoice, InvoiceConnection


@strawberry.type
class InvoiceQueries:
    @strawberry.field(
        description="An invoice by public id (inv_...) or number (ACME-0007); null when missing or not visible.",
        permission_classes=[IsAuthenticated],
    )
    def invoice(
        self,
        info: Info,
        id: Annotated[
            strawberry.ID,
            strawberry.argument(
                description="A public id (inv_...) or an invoice number (ACME-0007, any case)."
            ),
        ],
    ) -> Invoice | None:
        row = permissions.visible_invoice(info.context, str(id))
        return Invoice.from_row(row) if row is not None else None

    @strawberry.field(
        description="Invoices visible to the caller, newest billing period first; `first` at most 100.",
        permission_classes=[IsAuthenticated],
    )
    def invoices(
        self,
        info: Info,
        first: First = None,
        after: After = None,
        filter: Filter = None,
        last: Last = None,
        before: Before = None,
    ) -> InvoiceConnection:
        return invoice_page(
            info, w=window(first, after, last, before), filter=filter, organization_id=None
        )
