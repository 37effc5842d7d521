"""`Invoice.payment` and `SyncState.remoteDueDate`: what Stripe tells us about collecting an
invoice (from its webhooks) and the due date the sync sent to Stripe."""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import sqlalchemy as sa
import strawberry
from strawberry.types import Info

from models import payments, tables


@strawberry.type(description="Where collecting the invoice stands on Stripe (from its webhooks).")
class InvoicePayment:
    status: tables.PaymentStatus = strawberry.field(
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
    """Null for drafts; PENDING until Stripe reports on a finalized invoice."""
    row: tables.Invoice = root.row
    if row.status == tables.InvoiceStatus.DRAFT or row.id is None:
        return None
    found = payments.payment_of(info.context.session, row.id)
    if found is None:
        status = (
            tables.PaymentStatus.SUCCEEDED
            if row.status == tables.InvoiceStatus.PAID
            else tables.PaymentStatus.PENDING
        )
        return InvoicePayment(
            status=status, attempt_count=0, last_failure_message=None, next_attempt_at=None
        )
    return InvoicePayment(
        status=tables.PaymentStatus(found.status),
        attempt_count=found.attempt_count,
        last_failure_message=found.last_failure_message,
        next_attempt_at=found.next_attempt_at,
    )


def resolve_remote_due_date(root: Any, info: Info) -> date | None:
    """The due date Stripe holds: our dueDate, or later when the sync happened late."""
    value = info.context.session.execute(
        sa.text("SELECT remote_due_date FROM invoice_sync WHERE invoice_id = :id"),
        {"id": root.invoice_id},
    ).scalar_one_or_none()
    return value if isinstance(value, date) else None
