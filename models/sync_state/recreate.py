"""`resyncInvoice(input: {invoiceId, recreate: true})`: give up a Stripe invoice that was voided
or deleted on Stripe by hand, and make a new one for the same invoice, on purpose.

Only for an invoice whose sync FAILED because its remote invoice is gone (REMOTE_VOIDED,
REMOTE_DELETED): anything else could put a second live invoice on Stripe. The old remote id is
kept in `invoice_sync.replaced_stripe_invoice_ids` (lookups never adopt it again, and nothing
voids it a second time), and the create, lines and finalize steps move to a new idempotency
key generation, so Stripe cannot answer with the old invoice.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from models import tables
from models.errors import InvalidTransition
from models.sync_state import outbox
from models.tables import SyncStatus

RECREATABLE = ("REMOTE_VOIDED", "REMOTE_DELETED")
RECREATED_STEPS = ("create", "lines", "finalize")


def request_recreate(
    session: Session, invoice: tables.Invoice, *, now: datetime
) -> tables.InvoiceSync:
    """FAILED (remote voided or deleted) -> PENDING, to create a new Stripe invoice. Writes the
    replaced remote id, the next key generations and a fresh due date; caller commits, then
    enqueues the sync. Raises InvalidTransition for any other state."""
    assert invoice.id is not None
    row = outbox.get(session, invoice.id, for_update=True)
    if row is None or row.state != SyncStatus.FAILED or row.last_error_code not in RECREATABLE:
        raise InvalidTransition(
            "recreate is only for an invoice whose Stripe invoice was voided or deleted on "
            "Stripe (sync FAILED with REMOTE_VOIDED or REMOTE_DELETED); use a plain resync",
            field=("recreate",),
        )
    if invoice.stripe_invoice_id:
        row.replaced_stripe_invoice_ids = [
            *row.replaced_stripe_invoice_ids,
            invoice.stripe_invoice_id,
        ]
    generations = dict(row.key_generations)
    for step in RECREATED_STEPS:
        generations[step] = generations.get(step, 1) + 1
    row.key_generations = generations
    # A new Stripe invoice gets a due date chosen when it is created (the old one may be past).
    row.remote_due_date = None
    # Stripe ids are set once (a trigger refuses a rewrite); forgetting a voided remote invoice
    # and its line ids is the one deliberate exception, and this transaction says so.
    session.execute(sa.text("SET LOCAL billing.recreate_remote = 'on'"))
    session.execute(
        sa.update(tables.Invoice)
        .where(tables.Invoice.id == invoice.id)  # type: ignore[arg-type]
        .values(stripe_invoice_id=None)
    )
    session.execute(
        sa.update(tables.InvoiceItem)
        .where(tables.InvoiceItem.invoice_id == invoice.id)  # type: ignore[arg-type]
        .values(stripe_line_id=None)
    )
    invoice.stripe_invoice_id = None
    outbox.make_due(row, now=now, reset_attempts=True)
    session.flush()
    return row
