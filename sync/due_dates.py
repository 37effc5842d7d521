"""The due date we send to Stripe.

Stripe refuses a `due_date` that is not in the future (`collection_method=send_invoice`), so an
invoice synced after its own due date (a Stripe outage, an open breaker, a FAILED invoice
resynced at month end, every historical invoice of the demo) cannot carry it. The rule:

    remote due date = max(our due date, sync day + 14 days)

Why: the customer's time to pay starts when the bill can reach them, which is when it is on
Stripe. Our own `dueDate` stays what it was at finalize (the invoice is immutable); the date
Stripe holds is shown next to it as `syncState.remoteDueDate`, so support can see both. An
on-time sync changes nothing (sync day = finalize day: the two dates are equal), a sync one day
late gives one more day, never fewer than the standard 14.

The date is chosen once, by the first create, and stored (`invoice_sync.remote_due_date`), so a
retried create sends the same parameters under the same idempotency key even across midnight.
A stored date that is no longer in the future (a create retried two weeks later, long after
its key expired) is chosen again.
"""

from __future__ import annotations

from datetime import date, timedelta

import sqlalchemy as sa
from sqlmodel import Session

PAYMENT_TERMS = timedelta(days=14)


def remote_due_date(our_due: date, *, today: date) -> date:
    return max(our_due, today + PAYMENT_TERMS)


def choose(session: Session, invoice_id: int, our_due: date, *, today: date) -> date:
    """The stored remote due date if still in the future, else a new one, stored. Runs in the
    caller's short transaction."""
    stored = session.execute(
        sa.text("SELECT remote_due_date FROM invoice_sync WHERE invoice_id = :id FOR UPDATE"),
        {"id": invoice_id},
    ).scalar_one_or_none()
    if stored is not None and stored > today:
        return date.fromisoformat(str(stored))
    chosen = remote_due_date(our_due, today=today)
    session.execute(
        sa.text("UPDATE invoice_sync SET remote_due_date = :d WHERE invoice_id = :id"),
        {"d": chosen, "id": invoice_id},
    )
    return chosen
