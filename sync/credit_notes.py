"""Pushing an invoice's credit notes to Stripe, as steps of the invoice's own sync.

Why inside the invoice's sync (one outbox row, one lease per invoice) rather than a row per
credit note: Stripe takes a credit note only against a finalized invoice and its line ids, so
every credit note step must run after the invoice's create/lines/finalize steps; running them
under the invoice's lease orders them for free, and a credit note issued while its invoice is
still syncing simply waits (the issue bumps the row's revision, so the running pass ends due
again and the next pass carries it). Each credit note still has its own keys and remote state:

    create_remote_credit_note   POST /v1/credit_notes            key credit_note:{id}:create
    void_remote_credit_note     POST /v1/credit_notes/{id}/void  key credit_note:{id}:void

Before creating, the invoice's credit notes are listed (a consistent list call, filtered by
our metadata[credit_note_id]), so a create whose answer was lost, or whose key expired, is
found instead of sent twice. Each remote id is stored as soon as it is known.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.tables import CreditNoteStatus
from sync import keys
from sync.errors import Mismatch
from sync.stripe_client import RemoteCreditNote, StripeGateway

if TYPE_CHECKING:
    from stripe.params import CreditNoteCreateParams

META_KEY = "credit_note_id"


@dataclass(frozen=True)
class Line:
    stripe_line_id: str | None
    amount_cents: int
    description: str


@dataclass(frozen=True)
class Pending:
    """A credit note that Stripe does not reflect yet: to create, or to void."""

    id: int
    public_id: str
    number: str
    status: str
    reason: str
    memo: str | None
    total_cents: int
    post_payment: bool
    refund_cents: int
    credit_balance_cents: int
    out_of_band_cents: int
    stripe_credit_note_id: str | None
    lines: tuple[Line, ...]


def pending(session: Session, invoice_id: int) -> list[Pending]:
    """The invoice's credit notes still to create or void on Stripe, oldest first (one short
    transaction; nothing when there are none, so an invoice without credits pays nothing)."""
    cn, ln, item = tables.CreditNote, tables.CreditNoteLine, tables.InvoiceItem
    with session.begin():
        notes = session.exec(
            select(cn)
            .where(col(cn.invoice_id) == invoice_id)
            .where(
                sa.or_(
                    sa.and_(
                        col(cn.status) == CreditNoteStatus.ISSUED,
                        col(cn.stripe_credit_note_id).is_(None),
                    ),
                    sa.and_(
                        col(cn.status) == CreditNoteStatus.VOID,
                        col(cn.stripe_voided_at).is_(None),
                    ),
                )
            )
            .order_by(col(cn.id))
            .execution_options(populate_existing=True)
        ).all()
        lines: dict[int, list[Line]] = {n.id or 0: [] for n in notes}
        if notes:
            rows = session.execute(
                sa.select(ln.credit_note_id, item.stripe_line_id, ln.amount_cents, ln.description)  # type: ignore[call-overload]
                .outerjoin(item, col(item.id) == ln.invoice_item_id)
                .where(col(ln.credit_note_id).in_(list(lines)))
                .order_by(ln.id)
            )
            for note_id, stripe_line_id, amount, description in rows:
                lines[note_id].append(Line(stripe_line_id, int(amount), description))
        out = [
            Pending(
                id=n.id or 0,
                public_id=n.public_id,
                number=n.number,
                status=n.status,
                reason=n.reason,
                memo=n.memo,
                total_cents=n.total_cents,
                post_payment=n.post_payment,
                refund_cents=n.refund_cents,
                credit_balance_cents=n.credit_balance_cents,
                out_of_band_cents=n.out_of_band_cents,
                stripe_credit_note_id=n.stripe_credit_note_id,
                lines=tuple(lines[n.id or 0]),
            )
            for n in notes
        ]
    session.expunge_all()
    return out


def push(
    session: Session,
    stripe: StripeGateway,
    remote_invoice_id: str,
    notes: list[Pending],
) -> None:
    """Create and void `notes` on Stripe (the invoice is finalized there). One list call finds
    what an earlier attempt already created; every step stores its result at once."""
    if not notes:
        return
    listed = {
        r.metadata.get(META_KEY): r
        for r in stripe.list_credit_notes(remote_invoice_id)
        if r.metadata.get(META_KEY)
    }
    for note in notes:
        remote = listed.get(note.public_id)
        if note.status == CreditNoteStatus.ISSUED:
            if remote is None:
                remote = create_remote_credit_note(stripe, remote_invoice_id, note)
            _store_id(session, note, remote)
            if remote.total != note.total_cents:
                raise Mismatch(
                    f"Stripe credit note {remote.id} totals {remote.total}, ours "
                    f"{note.number} {note.total_cents}; void it on Stripe, then resync"
                )
        else:
            void_remote_credit_note(session, stripe, note, remote)


def create_remote_credit_note(
    stripe: StripeGateway, remote_invoice_id: str, note: Pending
) -> RemoteCreditNote:
    lines: list[dict[str, Any]] = [
        {
            "type": "invoice_line_item",
            "invoice_line_item": line.stripe_line_id,
            "amount": line.amount_cents,
        }
        if line.stripe_line_id
        # A line sent to Stripe inside a group (an invoice past Stripe's 250-item cap) has no
        # Stripe line of its own: it is credited as a custom line with its description.
        else {
            "type": "custom_line_item",
            "unit_amount": line.amount_cents,
            "quantity": 1,
            "description": line.description[:500],
        }
        for line in note.lines
    ]
    params: dict[str, Any] = {
        "invoice": remote_invoice_id,
        "lines": lines,
        "reason": note.reason,
        "metadata": {META_KEY: note.public_id, "number": note.number},
    }
    if note.memo:
        params["memo"] = note.memo
    if note.post_payment:
        # Stripe's split of a paid invoice's credit; the database checked it sums to the total.
        for name, value in (
            ("refund_amount", note.refund_cents),
            ("credit_amount", note.credit_balance_cents),
            ("out_of_band_amount", note.out_of_band_cents),
        ):
            if value:
                params[name] = value
    typed: CreditNoteCreateParams = params  # type: ignore[assignment]
    return stripe.create_credit_note(typed, key=keys.credit_note_create(note.public_id))


def void_remote_credit_note(
    session: Session, stripe: StripeGateway, note: Pending, remote: RemoteCreditNote | None
) -> None:
    """Voided here: void it on Stripe (never created there: nothing to void)."""
    if remote is None and note.stripe_credit_note_id is None:
        _store_voided(session, note)  # no Stripe credit note exists (the list is consistent)
        return
    if remote is not None:
        _store_id(session, note, remote)
    if remote is None or remote.status == "issued":
        stripe.void_credit_note(
            remote.id if remote else str(note.stripe_credit_note_id),
            key=keys.credit_note_void(note.public_id),
        )
    _store_voided(session, note)


def _store_id(session: Session, note: Pending, remote: RemoteCreditNote) -> None:
    with session.begin():
        session.execute(
            sa.update(tables.CreditNote)
            .where(col(tables.CreditNote.id) == note.id)
            .where(col(tables.CreditNote.stripe_credit_note_id).is_(None))
            .values(stripe_credit_note_id=remote.id)
        )


def _store_voided(session: Session, note: Pending) -> None:
    with session.begin():
        session.execute(
            sa.update(tables.CreditNote)
            .where(col(tables.CreditNote.id) == note.id)
            .where(col(tables.CreditNote.stripe_voided_at).is_(None))
            .values(stripe_voided_at=datetime.now(UTC))
        )
