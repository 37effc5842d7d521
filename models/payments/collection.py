"""Payments: what Stripe tells us about collecting an invoice (webhook events in), and what we
tell Stripe when an invoice is paid here (`markInvoicePaid`, through the outbox).

Events come duplicated, late and out of order. So every event is stored once by its id before
anything is done with it (a duplicate hits the primary key and changes nothing), and what an
event does depends on the state the invoice is in now, not on the order events arrive in:
a PAID invoice stays PAID whatever older `invoice.payment_failed` arrives after it; a failed
attempt only replaces the payment state of an older event (`invoice_payments.as_of`).

Plain functions over a Session; none commits. This module knows Stripe's event and invoice
*shapes* (plain dicts), never the Stripe SDK: the signature check is `sync.webhooks`' job.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import Session, col, select

from models import tables
from models.invoices import lifecycle
from models.sync_state import outbox
from models.tables import InvoiceStatus, PaymentStatus, SyncStatus
from models.webhooks_out import events as webhook_events

# Events whose data.object is an invoice and that we act on; others are stored and ignored.
HANDLED = (
    "invoice.paid",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
    "invoice.updated",
)
REMOTE_ACTION = (
    "if the invoice should still be billed, run resyncInvoice(input: {invoiceId, recreate: "
    "true}) to create a new Stripe invoice for it; otherwise void it here"
)


@dataclass(frozen=True)
class Event:
    """A verified Stripe event, as the webhook endpoint hands it over."""

    id: str
    type: str
    created: datetime
    object: Mapping[str, Any]
    payload: Mapping[str, Any]


def _ts(value: Any) -> datetime | None:
    return datetime.fromtimestamp(int(value), UTC) if value else None


def record(session: Session, event: Event) -> bool:
    """Store the event once by its id (uses pk_stripe_events). False: seen before. The
    outcome is written by `handle` in the same transaction."""
    inserted = session.execute(
        insert(tables.StripeEvent)
        .values(
            id=event.id,
            type=event.type,
            object_id=str(event.object.get("id") or "") or None,
            created=event.created,
            outcome="received",
            payload=dict(event.payload),
        )
        .on_conflict_do_nothing(index_elements=["id"])
        .returning(sa.column("id"))
    ).first()
    return inserted is not None


def _set_outcome(session: Session, event_id: str, outcome: str) -> None:
    session.execute(
        sa.update(tables.StripeEvent)
        .where(col(tables.StripeEvent.id) == event_id)
        .values(outcome=outcome[:500])
    )


def _our_invoice(session: Session, obj: Mapping[str, Any]) -> tables.Invoice | None:
    """Ours by the Stripe id we stored, else by our metadata[invoice_id] (an event can arrive
    before the sync stored the id: a lost create answer)."""
    remote_id = str(obj.get("id") or "")
    found = session.exec(
        select(tables.Invoice).where(col(tables.Invoice.stripe_invoice_id) == remote_id)
    ).first()
    if found is not None:
        return found
    public_id = (obj.get("metadata") or {}).get("invoice_id")
    if not public_id:
        return None
    found = session.exec(
        select(tables.Invoice).where(col(tables.Invoice.public_id) == str(public_id))
    ).first()
    if found is None or (found.stripe_invoice_id and found.stripe_invoice_id != remote_id):
        return None  # a replaced (recreated) remote invoice, or not ours
    return found


def handle(session: Session, event: Event, *, now: datetime) -> str:
    """Store and apply one verified event; returns what it did (also stored as its outcome).
    Caller commits. Never raises for an event we cannot use: it is stored and explained."""
    if not record(session, event):
        return "duplicate"
    outcome = _apply(session, event, now=now)
    _set_outcome(session, event.id, outcome)
    return outcome


def _apply(session: Session, event: Event, *, now: datetime) -> str:
    if event.type not in HANDLED:
        return "ignored: not an event we act on"
    obj = event.object
    if obj.get("object") != "invoice":
        return "ignored: not an invoice"
    found = _our_invoice(session, obj)
    if found is None:
        return "ignored: not one of our invoices"
    assert found.id is not None
    invoice = lifecycle.get_for_update(session, found.id)
    if event.type == "invoice.paid":
        return _paid(session, invoice, event)
    if event.type == "invoice.payment_failed":
        return _payment_failed(session, invoice, event, now=now)
    if event.type == "invoice.voided":
        if invoice.status == InvoiceStatus.VOID:
            return "ok: void here too"
        _fail_sync(
            session,
            invoice,
            code="REMOTE_VOIDED",
            message=f"Stripe invoice {obj.get('id')} was voided on Stripe; " + REMOTE_ACTION,
            now=now,
        )
        return "sync failed: REMOTE_VOIDED"
    if event.type == "invoice.marked_uncollectible":
        if invoice.status != InvoiceStatus.OPEN:
            return f"ok: {invoice.status} here"
        lifecycle.mark_uncollectible(
            session, invoice, now=_ts(obj_transition(obj, "marked_uncollectible_at")) or now
        )
        return "uncollectible"
    return _updated(session, invoice, event, now=now)


def obj_transition(obj: Mapping[str, Any], name: str) -> Any:
    return (obj.get("status_transitions") or {}).get(name)


def _paid(session: Session, invoice: tables.Invoice, event: Event) -> str:
    paid_at = _ts(obj_transition(event.object, "paid_at")) or event.created
    _upsert_payment(session, invoice, event, status=PaymentStatus.SUCCEEDED, force=True)
    if invoice.status == InvoiceStatus.PAID:
        return "ok: already paid"
    if invoice.status == InvoiceStatus.VOID:
        # Paid on Stripe, void here: money came in for a bill we withdrew. A person decides.
        _fail_sync(
            session,
            invoice,
            code="PAID_ON_STRIPE",
            message="Stripe collected this invoice, which is void here: refund it on Stripe",
            now=event.created,
        )
        return "sync failed: PAID_ON_STRIPE"
    lifecycle.mark_paid(session, invoice, now=paid_at)
    return "paid"


def _payment_failed(
    session: Session, invoice: tables.Invoice, event: Event, *, now: datetime
) -> str:
    if invoice.status == InvoiceStatus.PAID:
        return "ignored: already paid"
    applied = _upsert_payment(session, invoice, event, status=PaymentStatus.FAILED, force=False)
    if not applied:
        return "ignored: older than the payment state"
    assert invoice.id is not None
    # Told to the platform's endpoints in this transaction (models/webhooks_out/events.py).
    obj = event.object
    webhook_events.emit_for_invoice(
        session,
        webhook_events.INVOICE_PAYMENT_FAILED,
        invoice.id,
        extra={
            "attempt_count": int(obj.get("attempt_count") or 0),
            "failure": _failure_message(obj),
            "stripe_event_id": event.id,
        },
        now=now,
    )
    return "payment failed"


def _updated(session: Session, invoice: tables.Invoice, event: Event, *, now: datetime) -> str:
    obj = event.object
    if obj.get("status") == "draft":
        return "ok: a draft (the sync verifies it before finalizing)"
    problems = []
    if int(obj.get("total") or 0) != invoice.total_cents:
        problems.append(f"its total is {obj.get('total')}, ours {invoice.total_cents}")
    if str(obj.get("currency") or "").lower() != invoice.currency.strip().lower():
        problems.append(f"its currency is {obj.get('currency')}, ours {invoice.currency}")
    if not problems:
        return "ok: matches"
    _fail_sync(
        session,
        invoice,
        code="MISMATCH",
        message=(
            f"Stripe invoice {obj.get('id')} was changed on Stripe: {'; '.join(problems)}. "
            "Void it on Stripe, then resync with recreate: true"
        ),
        now=now,
    )
    return "sync failed: MISMATCH"


def _upsert_payment(
    session: Session,
    invoice: tables.Invoice,
    event: Event,
    *,
    status: PaymentStatus,
    force: bool,
) -> bool:
    """Write the payment state from `event` unless a newer event already did (or the payment
    already succeeded); `force` for success, which no later failure can undo."""
    obj = event.object
    values = {
        "invoice_id": invoice.id,
        "status": status.value,
        "attempt_count": int(obj.get("attempt_count") or 0),
        "last_failure_message": (_failure_message(obj) if status == PaymentStatus.FAILED else None),
        "next_attempt_at": (
            _ts(obj.get("next_payment_attempt")) if status == PaymentStatus.FAILED else None
        ),
        "as_of": event.created,
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


def _failure_message(obj: Mapping[str, Any]) -> str:
    # The invoice carries no decline reason (that lives on its PaymentIntent); say what Stripe
    # does tell us: how many attempts failed and whether it will try again.
    attempts = int(obj.get("attempt_count") or 0)
    retry = _ts(obj.get("next_payment_attempt"))
    again = f"; Stripe retries on {retry:%Y-%m-%d}" if retry else "; no retry scheduled"
    return f"payment attempt {attempts} failed{again}"


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


def mark_paid(session: Session, invoice: tables.Invoice, *, now: datetime) -> tables.Invoice:
    """OPEN or UNCOLLECTIBLE -> PAID here, and the sync row made due so that the worker tells
    Stripe (`pay` with paid_out_of_band, key `invoice:{id}:pay`). Caller commits, then
    enqueues the sync."""
    invoice = lifecycle.mark_paid(session, invoice, now=now)
    assert invoice.id is not None
    row = outbox.get(session, invoice.id, for_update=True)
    if row is not None:
        outbox.make_due(row, now=now, reset_attempts=row.state == SyncStatus.FAILED)
    session.flush()
    return invoice
