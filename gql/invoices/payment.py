"""`Invoice.payment`: what Stripe tells us about collecting an invoice (from its webhooks)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from gql.core.context import Info
from gql.invoices.dataloaders import PaymentByInvoiceIdLoader
from gql.invoices.enums import PaymentStatus
from models import tables


@strawberry.type(description="Where collecting the invoice stands on Stripe (from its webhooks).")
class InvoicePayment:
    status: PaymentStatus = strawberry.field(
        description="PENDING (nothing heard yet), FAILED (an attempt was declined) or SUCCEEDED."
    )
    attempt_count: int = strawberry.field(description="Collection attempts Stripe has made.")
    last_failure_message: str | None = strawberry.field(
        description="What the last failed attempt said, while FAILED."
    )
    next_attempt_at: datetime | None = strawberry.field(
        description="When Stripe tries to collect again, if it will."
    )


def resolve_payment(root: Any, info: Info) -> InvoicePayment | None:
    """Null for drafts; PENDING until Stripe reports on a finalized invoice. One query per page
    of invoices, not per invoice (PaymentByInvoiceIdLoader)."""
    row = root.row  # an Invoice or a result row with its attribute names
    if row.status == tables.InvoiceStatus.DRAFT or row.id is None:
        return None
    found = info.context.loader(PaymentByInvoiceIdLoader).load(
        row.id, [r.id for r in root.page if r.status != tables.InvoiceStatus.DRAFT]
    )
    if found is None:
        status = (
            PaymentStatus.SUCCEEDED
            if row.status == tables.InvoiceStatus.PAID
            else PaymentStatus.PENDING
        )
        return InvoicePayment(
            status=status, attempt_count=0, last_failure_message=None, next_attempt_at=None
        )
    return InvoicePayment(
        status=PaymentStatus(found.status),
        attempt_count=found.attempt_count,
        last_failure_message=found.last_failure_message,
        next_attempt_at=found.next_attempt_at,
    )
