"""Payments: what Stripe tells us about collecting an invoice (webhook events in), and what we
tell Stripe when an invoice is paid here (`markInvoicePaid`, through the outbox).

Events come duplicated, late and out of order. So every event is stored once by its id before
anything is done with it (a duplicate hits the primary key and changes nothing), and what an
event does depends on the state the invoice is in now, not on the order events arrive in:
a PAID invoice stays PAID whatever older `invoice.payment_failed` arrives after it; a failed
attempt only replaces the payment state of an older event (`invoice_payments.as_of`).

Every stored event gets a verdict (`models.payments.events.VERDICTS`) and an outcome sentence;
an event we cannot use (malformed, not our invoice, a DRAFT here) is stored and explained, never
raised, so the endpoint answers 200 and Stripe stops retrying it.

Plain functions over a Session; none commits. The event's fields arrive typed from
`models.payments.events` (which reads Stripe's shapes); never the Stripe SDK: the signature
check is `sync.webhooks`' job.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from models import tables
from models.invoices import lifecycle
from models.payments import events
from models.payments.events import Event, InvoiceObject
from models.sync_state import outbox
from models.tables import InvoiceStatus, PaymentStatus, SyncStatus
from models.webhooks_out import events as webhook_events

# Events whose data.object is an invoice and that we act on; others are stored and ignored.
CREDIT_NOTE_EVENTS = ("credit_note.created", "credit_note.voided")
HANDLED = (
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "invoice.updated",
)
# Events whose data.object is a credit note (models/invoices/credit_notes.py).
CREDIT_NOTE_EVENTS = ("credit_note.created", "credit_note.voided")
REMOTE_ACTION = (
    "if the invoice should still be billed, run resyncInvoice(input: {invoiceId, recreate: "
    "true}) to create a new Stripe invoice for it; otherwise void it here"
)


@dataclass(frozen=True)
class Handled:
    """What an event did: the verdict (events.VERDICTS, or "duplicate" for one seen before,
    which is not stored again) and the outcome, a sentence for people."""

    verdict: str
    outcome: str


def record(session: Session, event: Event, *, verdict: str, outcome: str) -> bool:
    """Store the event once by its id (uses pk_stripe_events). False: seen before. `handle`
    writes the final verdict and outcome in the same transaction."""
    inserted = session.execute(
        insert(tables.StripeEvent)
        .values(
            id=event.id,
            type=event.type,
            object_id=event.object_id,
            created=event.created,
            verdict=verdict,
            outcome=outcome[:500],
            payload=dict(event.payload),
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(sa.column("id"))
    ).first()
    return inserted is not None


def _set_outcome(session: Session, event_id: str, handled: Handled) -> None:
    session.execute(
        sa.update(tables.StripeEvent)
        .where(col(tables.StripeEvent.id) == event_id)
        .values(verdict=handled.verdict, outcome=handled.outcome[:500])
    )


def _our_invoice(session: Session, obj: InvoiceObject) -> tables.Invoice | None:
    """Ours by the Stripe id we stored, else by our metadata[invoice_id] (an event can arrive
    before the sync stored the id: a lost create answer)."""
    found = session.exec(
        select(tables.Invoice).where(col(tables.Invoice.stripe_invoice_id) == obj.id)
    ).first()
    if found is not None:
        return found
    if not obj.our_invoice_id or not events.storable(obj.our_invoice_id):
        return None
    found = session.exec(
        select(tables.Invoice).where(col(tables.Invoice.public_id) == obj.our_invoice_id)
    ).first()
    if found is None or (found.stripe_invoice_id and found.stripe_invoice_id != obj.id):
        return None  # a replaced (recreated) remote invoice, or not ours
    return found


def handle(session: Session, event: Event, *, now: datetime) -> Handled:
    """Store and apply one verified event; returns what it did (also stored). Caller commits.
    Never raises for an event we cannot use: it is stored with its verdict and explained."""
    if event.malformed is not None:
        outcome = f"malformed: {event.malformed}"
        if not record(session, event, verdict=events.MALFORMED, outcome=outcome):
            return Handled("duplicate", "duplicate")
        return Handled(events.MALFORMED, outcome)
    if not record(session, event, verdict=events.APPLIED, outcome="received"):
        return Handled("duplicate", "duplicate")
    handled = _apply(session, event, now=now)
    _set_outcome(session, event.id, handled)
    return handled


def _apply(session: Session, event: Event, *, now: datetime) -> Handled:
    if event.type in CREDIT_NOTE_EVENTS:
        return _credit_note_event(session, event, now=now)
    obj = event.invoice
    if event.type not in HANDLED or obj is None:
        return Handled(events.IGNORED, "ignored: not an event we act on")
    found = _our_invoice(session, obj)
    if found is None:
        return Handled(events.UNKNOWN_INVOICE, f"ignored: {obj.id} is not one of our invoices")
    assert found.id is not None
    invoice = lifecycle.get_for_update(session, found.id)
    if invoice.status == InvoiceStatus.DRAFT:
        # Stripe only sees finalized invoices of ours; a draft here means the event belongs to
        # another life of this invoice (or was forged by someone holding the secret).
        return Handled(
            events.NOT_FOR_DRAFT, f"ignored: {invoice.public_id} is a DRAFT here, not on Stripe"
        )
    created = event.created
    assert created is not None  # events.read: only a malformed event lacks it
    if event.type == "invoice.paid":
        return _paid(session, invoice, obj, created)
    if event.type == "invoice.payment_failed":
        return _payment_failed(session, invoice, obj, created, event_id=event.id, now=now)
    if event.type == "invoice.voided":
        if invoice.status == InvoiceStatus.VOID:
            return Handled(events.APPLIED, "ok: void here too")
        _fail_sync(
            session,
            invoice,
            code="REMOTE_VOIDED",
            message=f"Stripe invoice {obj.id} was voided on Stripe; " + REMOTE_ACTION,
            now=now,
        )
        return Handled(events.APPLIED, "sync failed: REMOTE_VOIDED")
    if event.type == "invoice.marked_uncollectible":
        if invoice.status != InvoiceStatus.OPEN:
            return Handled(events.APPLIED, f"ok: {invoice.status} here")
        lifecycle.mark_uncollectible(session, invoice, now=obj.marked_uncollectible_at or now)
        return Handled(events.APPLIED, "uncollectible")
    return _updated(session, invoice, obj, now=now)


def _paid(
    session: Session, invoice: tables.Invoice, obj: InvoiceObject, created: datetime
) -> Handled:
    paid_at = obj.paid_at or created
    _upsert_payment(session, invoice, obj, created, status=PaymentStatus.SUCCEEDED, force=True)
    if invoice.status == InvoiceStatus.PAID:
        return Handled(events.APPLIED, "ok: already paid")
    if invoice.status == InvoiceStatus.VOID:
        # Paid on Stripe, void here: money came in for a bill we withdrew. A person decides.
        _fail_sync(
            session,
            invoice,
            code="PAID_ON_STRIPE",
            message="Stripe collected this invoice, which is void here: refund it on Stripe",
            now=created,
        )
        return Handled(events.APPLIED, "sync failed: PAID_ON_STRIPE")
    lifecycle.mark_paid(session, invoice, now=paid_at, paid_on=lifecycle.PaidOn.STRIPE)
    return Handled(events.APPLIED, "paid")


def _payment_failed(
    session: Session,
    invoice: tables.Invoice,
    obj: InvoiceObject,
    created: datetime,
    *,
    event_id: str,
    now: datetime,
) -> Handled:
    if invoice.status == InvoiceStatus.PAID:
        return Handled(events.IGNORED, "ignored: already paid")
    applied = _upsert_payment(
        session, invoice, obj, created, status=PaymentStatus.FAILED, force=False
    )
    if not applied:
        return Handled(events.IGNORED, "ignored: older than the payment state")
    assert invoice.id is not None
    # Told to the platform's endpoints in this transaction (models/webhooks_out/events.py).
    webhook_events.emit_for_invoice(
        session,
        webhook_events.INVOICE_PAYMENT_FAILED,
        invoice.id,
        extra={
            "attempt_count": obj.attempt_count,
            "failure": _failure_message(obj),
            "stripe_event_id": event_id,
        },
        now=now,
    )
    return Handled(events.APPLIED, "payment failed")


def _updated(
    session: Session, invoice: tables.Invoice, obj: InvoiceObject, *, now: datetime
) -> Handled:
    if obj.status == "draft":
        return Handled(events.APPLIED, "ok: a draft (the sync verifies it before finalizing)")
    problems = []
    if (obj.total or 0) != invoice.total_cents:
        problems.append(f"its total is {obj.total}, ours {invoice.total_cents}")
    if (obj.currency or "").lower() != invoice.currency.strip().lower():
        problems.append(f"its currency is {obj.currency}, ours {invoice.currency}")
    if not problems:
        return Handled(events.APPLIED, "ok: matches")
    _fail_sync(
        session,
        invoice,
        code="MISMATCH",
        message=(
            f"Stripe invoice {obj.id} was changed on Stripe: {'; '.join(problems)}. "
            "Void it on Stripe, then resync with recreate: true"
        ),
        now=now,
    )
    return Handled(events.APPLIED, "sync failed: MISMATCH")


def _upsert_payment(
    session: Session,
    invoice: tables.Invoice,
    obj: InvoiceObject,
    created: datetime,
    *,
    status: PaymentStatus,
    force: bool,
) -> bool:
    """Write the payment state from an event made at `created` unless a newer event already
    did (or the payment already succeeded); `force` for success, which no later failure can
    undo."""
    failed = status == PaymentStatus.FAILED
    values = {
        "invoice_id": invoice.id,
        "status": status.value,
        "attempt_count": obj.attempt_count,
        "last_failure_message": _failure_message(obj) if failed else None,
        "next_attempt_at": obj.next_payment_attempt if failed else None,
        "as_of": created,
        "updated_at": sa.func.now(),
    }
    stmt = insert(tables.InvoicePayment).values(**values)
    update = {k: stmt.excluded[k] for k in values if k != "invoice_id"}
    table: sa.Table = tables.InvoicePayment.__table__  # type: ignore[attr-defined]
    where = None
    if not force:
        where = sa.and_(
            table.c.status != PaymentStatus.SUCCEEDED.value, table.c.as_of <= stmt.excluded.as_of
        )
    result = session.execute(
        stmt.on_conflict_do_update(
            index_elements=["invoice_id"], set_=update, where=where
        ).returning(table.c.invoice_id)
    ).first()
    return result is not None


def _failure_message(obj: InvoiceObject) -> str:
    # The invoice carries no decline reason (that lives on its PaymentIntent); say what Stripe
    # does tell us: how many attempts failed and whether it will try again.
    retry = obj.next_payment_attempt
    again = f"; Stripe retries on {retry:%Y-%m-%d}" if retry else "; no retry scheduled"
    return f"payment attempt {obj.attempt_count} failed{again}"


def _fail_sync(
    session: Session, invoice: tables.Invoice, *, code: str, message: str, now: datetime
) -> None:
    """Surface a change made on Stripe to operators: the sync row FAILED with the code. A
    worker holding the row finishes, sees the revision moved, and passes once more (where it
    finds the same thing on Stripe and fails with the same code)."""
    assert invoice.id is not None
    row = outbox.get(session, invoice.id, for_update=True)
    if row is None:
        return
    row.revision += 1
    row.updated_at = now
    row.last_error_class = code
    row.last_error_code = code
    row.last_error_message = message
    row.last_error_http_status = None
    row.last_error_request_id = None
    if row.state != SyncStatus.SYNCING:
        row.state = SyncStatus.FAILED
        row.next_attempt_at = None
    session.flush()


def _credit_note_event(session: Session, event: Event, *, now: datetime) -> Handled:
    """A credit note event, acted on against our credit note as it is now: its Stripe id is
    recorded if a lost answer kept it from us; a void on Stripe of a credit note still issued
    here is an operator's matter (surfaced on the invoice's sync, never copied silently)."""
    data = event.payload.get("data")
    obj = data.get("object") if isinstance(data, dict) else None
    if not isinstance(obj, dict) or obj.get("object") != "credit_note":
        return Handled(events.MALFORMED, "malformed: data.object is not a credit note")
    metadata = obj.get("metadata")
    voided_at = obj.get("voided_at")
    if not isinstance(obj.get("id"), str) or not isinstance(metadata, dict | None):
        return Handled(events.MALFORMED, "malformed: a credit note needs an id and metadata")
    if voided_at is not None and (isinstance(voided_at, bool) or not isinstance(voided_at, int)):
        return Handled(events.MALFORMED, "malformed: voided_at is not a Unix timestamp")
    remote_id = str(obj["id"])
    public_id = str((metadata or {}).get("credit_note_id") or "")
    cn = tables.CreditNote
    note = session.exec(
        select(cn)
        .where(sa.or_(col(cn.stripe_credit_note_id) == remote_id, col(cn.public_id) == public_id))
        .with_for_update()
    ).first()
    if note is None:
        return Handled(events.IGNORED, "ignored: not one of our credit notes")
    if note.stripe_credit_note_id is None:
        note.stripe_credit_note_id = remote_id
    elif note.stripe_credit_note_id != remote_id:
        return Handled(
            events.IGNORED,
            f"ignored: {note.number} is Stripe credit note {note.stripe_credit_note_id}",
        )
    if event.type == "credit_note.created" or obj.get("status") != "void":
        session.flush()
        return Handled(
            events.APPLIED, "ok: recorded" if note.stripe_voided_at is None else "ok: void here"
        )
    if note.status == tables.CreditNoteStatus.VOID:
        if note.stripe_voided_at is None:
            note.stripe_voided_at = datetime.fromtimestamp(voided_at, UTC) if voided_at else now
        session.flush()
        return Handled(events.APPLIED, "ok: void here too")
    session.flush()
    invoice = lifecycle.get_for_update(session, note.invoice_id)
    _fail_sync(
        session,
        invoice,
        code="REMOTE_CREDIT_NOTE_VOIDED",
        message=f"Stripe credit note {remote_id} ({note.number}) was voided on Stripe while it "
        "is issued here: void it here too (voidCreditNote), or issue it again",
        now=now,
    )
    return Handled(events.APPLIED, "sync failed: REMOTE_CREDIT_NOTE_VOIDED")
