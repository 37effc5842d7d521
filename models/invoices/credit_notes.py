"""Credit notes: corrections of finalized invoices as their own immutable documents.

A credit note is issued against one OPEN, UNCOLLECTIBLE or PAID invoice; it is never an edit of
the invoice. Its lines credit an amount (given, or a quantity x the line's unit price) against
one invoice line, or a custom amount with a description. The database refuses crediting any
line or the invoice beyond what it billed across all issued credit notes, and any edit after
issue (migration 0009); the checks here exist to give a coded error first.

Money on the invoice (one definition, `invoice_amounts`):
- credited = the totals of its issued credit notes;
- paid = for a PAID invoice, total - credited (what the customer paid, net of the refunds,
  balance credits and out-of-band settlements of post-payment credit notes); else 0;
- amount due = total - credited - paid (0 once paid; lowered by credits while OPEN).

Each function takes a Session, raises DomainError and never commits.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import rollup, tables
from models.errors import (
    InvalidSettlement,
    InvalidTransition,
    InvalidValue,
    NotFound,
    OverCredit,
    TooManyItems,
    ValueOutOfRange,
)
from models.ids import new_public_id
from models.invoices.lifecycle import MAX_TEXT, get_for_update
from models.money import (
    AMOUNT_MAX_CENTS,
    QUANTITY_MAX,
    QUANTITY_PLACES,
    line_amount_cents,
    parse_decimal,
)
from models.sync_state import outbox
from models.tables import CreditNoteReason, CreditNoteStatus, InvoiceStatus
from models.webhooks_out import events as webhook_events

# Stripe's limit on a credit note's lines is not documented; the invoice's cap is a safe bound.
MAX_LINES = 250
CREDITABLE = (InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE, InvoiceStatus.PAID)


@dataclass(frozen=True)
class CreditLineInput:
    """One line as a client states it: `line_item_id` (its public id) with `quantity` or
    `amount_cents`, or `description` with `amount_cents`. Validated by `issue`."""

    line_item_id: str | None = None
    quantity: Decimal | str | None = None
    amount_cents: int | None = None
    description: str | None = None


@dataclass(frozen=True)
class Settlement:
    """Where a PAID invoice's credit goes, in Stripe's terms: refund_amount, credit_amount
    (the customer's balance, used by the next invoice) and out_of_band_amount."""

    refund_cents: int = 0
    credit_balance_cents: int = 0
    out_of_band_cents: int = 0

    @property
    def total(self) -> int:
        return self.refund_cents + self.credit_balance_cents + self.out_of_band_cents


@dataclass(frozen=True)
class InvoiceAmounts:
    credited_cents: int
    paid_cents: int
    due_cents: int


def invoice_amounts(invoice: tables.Invoice | object, credited_cents: int) -> InvoiceAmounts:
    """The one definition of credited / paid / amount due (see the module docstring), from an
    invoice (row or result row with status and total_cents) and its issued credits."""
    status = getattr(invoice, "status")  # noqa: B009 (rows of two kinds)
    total = int(getattr(invoice, "total_cents"))  # noqa: B009
    paid = total - credited_cents if status == InvoiceStatus.PAID else 0
    due = 0 if status == InvoiceStatus.VOID else total - credited_cents - paid
    return InvoiceAmounts(credited_cents, paid, due)


def credited_by_invoice(session: Session, invoice_ids: Sequence[int]) -> dict[int, int]:
    """Issued credit per invoice id (absent: 0). Uses ix_credit_notes_invoice_id."""
    if not invoice_ids:
        return {}
    cn = tables.CreditNote
    rows = session.execute(
        sa.select(cn.invoice_id, sa.func.sum(cn.total_cents))  # type: ignore[call-overload]
        .where(col(cn.invoice_id).in_(list(invoice_ids)), cn.status == CreditNoteStatus.ISSUED)
        .group_by(cn.invoice_id)
    )
    return {int(i): int(t) for i, t in rows}


@dataclass(frozen=True)
class _Remaining:
    item: tables.InvoiceItem
    amount_cents: int
    quantity: Decimal


def _remaining(session: Session, invoice_id: int) -> dict[str, _Remaining]:
    """Per line item public id: what issued credit notes have not credited yet."""
    items = session.exec(
        select(tables.InvoiceItem).where(tables.InvoiceItem.invoice_id == invoice_id)
    ).all()
    line, note = tables.CreditNoteLine, tables.CreditNote
    used = {
        int(item_id): (int(amount), Decimal(qty))
        for item_id, amount, qty in session.execute(
            sa.select(  # type: ignore[call-overload]
                line.invoice_item_id,
                sa.func.sum(line.amount_cents),
                sa.func.coalesce(sa.func.sum(line.quantity), 0),
            )
            .join(note, col(note.id) == line.credit_note_id)
            .where(note.invoice_id == invoice_id, note.status == CreditNoteStatus.ISSUED)
            .where(col(line.invoice_item_id).is_not(None))
            .group_by(line.invoice_item_id)
        )
    }
    out = {}
    for item in items:
        assert item.id is not None
        amount, qty = used.get(item.id, (0, Decimal(0)))
        out[item.public_id] = _Remaining(item, item.amount_cents - amount, item.quantity - qty)
    return out


def remaining_by_item(session: Session, invoice_id: int) -> dict[int, tuple[int, Decimal]]:
    """Per invoice line id: (amount, quantity) not credited yet by issued credit notes."""
    return {
        r.item.id: (r.amount_cents, r.quantity)
        for r in _remaining(session, invoice_id).values()
        if r.item.id is not None
    }


def _line_values(
    i: int, line: CreditLineInput, remaining: Mapping[str, _Remaining], seen: set[str]
) -> tuple[int | None, str, Decimal | None, int]:
    """(invoice item id, description, quantity, amount) of one valid line, or its error."""
    where = ("lines", str(i))
    if line.line_item_id is None:
        if line.quantity is not None:
            raise InvalidValue(
                "a custom line has an amount, not a quantity", field=(*where, "quantity")
            )
        description = (line.description or "").strip()
        if not description or len(description) > MAX_TEXT or "\x00" in description:
            raise InvalidValue(
                f"a custom line needs a description of 1 to {MAX_TEXT} characters",
                field=(*where, "description"),
            )
        return None, description, None, _positive_amount(line.amount_cents, where)
    if (line.quantity is None) == (line.amount_cents is None):
        raise InvalidValue(
            "a line against an invoice line gives a quantity or an amount (one of them)",
            field=where,
        )
    left = remaining.get(line.line_item_id)
    if left is None:
        raise NotFound(
            f"no line item {line.line_item_id!r} on this invoice", field=(*where, "lineItemId")
        )
    if line.line_item_id in seen:
        raise InvalidValue("each invoice line may appear once per credit note", field=where)
    seen.add(line.line_item_id)
    item = left.item
    assert item.id is not None
    if item.amount_cents <= 0:
        raise InvalidValue(
            "only lines that charged something can be credited", field=(*where, "lineItemId")
        )
    description = (line.description or "").strip() or item.description
    if line.quantity is None:
        amount = _positive_amount(line.amount_cents, where)
        quantity = None
    else:
        quantity = parse_decimal(
            line.quantity, field="quantity", places=QUANTITY_PLACES, maximum=QUANTITY_MAX
        )
        if quantity <= 0:
            raise InvalidValue("quantity must be positive", field=(*where, "quantity"))
        if quantity > left.quantity:
            raise OverCredit(
                f"line {item.public_id} has {left.quantity} {item.unit} left to credit",
                field=(*where, "quantity"),
            )
        # The one rounding rule, once per line. Crediting all that is left gives back exactly
        # what is left: parts rounded one by one can differ from the whole by a cent.
        amount = (
            left.amount_cents
            if quantity == left.quantity
            else line_amount_cents(quantity, item.unit_price)
        )
        if amount <= 0:
            raise InvalidValue(
                f"{quantity} {item.unit} rounds to nothing", field=(*where, "quantity")
            )
    if amount > left.amount_cents:
        raise OverCredit(
            f"line {item.public_id} has {left.amount_cents} (minor units) left to credit",
            field=(*where, "amount"),
        )
    return item.id, description, quantity, amount


def _positive_amount(amount: int | None, where: tuple[str, ...]) -> int:
    if amount is None or amount <= 0:
        raise InvalidValue(
            "amount must be a positive number of minor units", field=(*where, "amount")
        )
    if amount > AMOUNT_MAX_CENTS:
        raise ValueOutOfRange(
            f"amount must be at most {AMOUNT_MAX_CENTS}", field=(*where, "amount")
        )
    return amount


def issue(
    session: Session,
    invoice: tables.Invoice,
    *,
    reason: str,
    memo: str | None,
    lines: Sequence[CreditLineInput],
    settlement: Settlement | None,
    created_by: str,
    now: datetime,
    rollup_shards: int,
    incident_id: int | None = None,
) -> tables.CreditNote:
    """Issue a credit note on a finalized invoice: its number, lines, the rollup's credited
    delta, the `credit_note.issued` event for outbound webhooks and the invoice's sync made due, in the caller's transaction.
    Raises InvalidTransition (draft or void invoice), InvalidValue, NotFound (a line item),
    OverCredit, InvalidSettlement, TooManyItems. Caller commits, then enqueues the sync."""
    assert invoice.id is not None
    invoice = get_for_update(session, invoice.id)  # numbering and the limits queue here
    invoice_id: int = invoice.id  # type: ignore[assignment]
    if invoice.status not in CREDITABLE:
        raise InvalidTransition(
            f"invoice {invoice.number or invoice.public_id} is {invoice.status}; credit notes "
            "are issued on open, uncollectible or paid invoices",
            field=("invoiceId",),
        )
    try:
        why = CreditNoteReason(reason)
    except ValueError:
        raise InvalidValue(f"unknown reason {reason!r}", field=("reason",)) from None
    if memo is not None and (len(memo) > MAX_TEXT or "\x00" in memo):
        raise InvalidValue(f"memo is longer than {MAX_TEXT} characters", field=("memo",))
    if not lines:
        raise InvalidValue("a credit note needs at least one line", field=("lines",))
    if len(lines) > MAX_LINES:
        raise TooManyItems(f"at most {MAX_LINES} lines per credit note", field=("lines",))
    remaining = _remaining(session, invoice_id)
    seen: set[str] = set()
    values = [_line_values(i, line, remaining, seen) for i, line in enumerate(lines)]
    total = sum(v[3] for v in values)
    credited = credited_by_invoice(session, [invoice_id]).get(invoice_id, 0)
    if credited + total > invoice.total_cents:
        raise OverCredit(
            f"invoice {invoice.number} has {invoice.total_cents - credited} (minor units) left "
            f"to credit; this credit note is {total}",
            field=("lines",),
        )
    post_payment = invoice.status == InvoiceStatus.PAID
    split = _settlement(settlement, total, post_payment=post_payment)
    n = session.execute(
        sa.select(sa.func.count()).where(col(tables.CreditNote.invoice_id) == invoice_id)
    ).scalar_one()
    note = tables.CreditNote(
        public_id=new_public_id("cn"),
        organization_id=invoice.organization_id,
        invoice_id=invoice_id,
        number=f"{invoice.number}-CN{int(n) + 1}",
        status=CreditNoteStatus.ISSUED,
        reason=why.value,
        memo=memo.strip() if memo and memo.strip() else None,
        currency=invoice.currency,
        total_cents=total,
        post_payment=post_payment,
        refund_cents=split.refund_cents,
        credit_balance_cents=split.credit_balance_cents,
        out_of_band_cents=split.out_of_band_cents,
        created_by=created_by,
        issued_at=now,
        incident_id=incident_id,
        created_at=now,
    )
    session.add(note)
    session.flush()
    assert note.id is not None
    session.add_all(
        tables.CreditNoteLine(
            credit_note_id=note.id,
            invoice_item_id=item_id,
            description=description,
            quantity=quantity,
            amount_cents=amount,
        )
        for item_id, description, quantity, amount in values
    )
    rollup.apply_credit(session, invoice, total, shards=rollup_shards)
    _announce_issued(session, note, invoice, now=now)
    _make_sync_due(session, invoice_id, now=now)
    session.flush()
    return note


def _announce_issued(
    session: Session, note: tables.CreditNote, invoice: tables.Invoice, *, now: datetime
) -> None:
    """`credit_note.issued` for outbound webhooks, in the issuing transaction: the event exists
    exactly when the credit note does (a rollback takes both away)."""
    slug = session.execute(
        sa.text("SELECT slug FROM organizations WHERE id = :o"), {"o": note.organization_id}
    ).scalar_one()
    webhook_events.emit(
        session,
        webhook_events.CREDIT_NOTE_ISSUED,
        organization_id=note.organization_id,
        object_id=note.public_id,
        payload={
            "id": note.public_id,
            "number": note.number,
            "invoice": {"id": invoice.public_id, "number": invoice.number},
            "organization": slug,
            "total_cents": note.total_cents,
            "currency": note.currency,
            "reason": note.reason,
            "issued_at": now.isoformat(),
        },
        now=now,
    )


def _settlement(given: Settlement | None, total: int, *, post_payment: bool) -> Settlement:
    """Stripe's rule: on a paid invoice the credit's total is split into refund, customer
    balance and out of band (the total is already bounded by what was paid: the invoice-level
    limit); on an unpaid one it lowers the amount due and settles nothing."""
    if not post_payment:
        if given is not None and given.total != 0:
            raise InvalidSettlement(
                "only a PAID invoice's credit is settled; this one lowers the amount due",
                field=("settlement",),
            )
        return Settlement()
    if given is None:
        raise InvalidSettlement(
            "the invoice is paid: say how the credit is settled (refund, customerBalance, "
            "outOfBand)",
            field=("settlement",),
        )
    if min(given.refund_cents, given.credit_balance_cents, given.out_of_band_cents) < 0:
        raise InvalidSettlement("settlement amounts cannot be negative", field=("settlement",))
    if given.total != total:
        raise InvalidSettlement(
            f"refund + customerBalance + outOfBand is {given.total}; the credit note is {total}",
            field=("settlement",),
        )
    return given


def void(
    session: Session, note: tables.CreditNote, *, now: datetime, rollup_shards: int
) -> tables.CreditNote:
    """ISSUED -> VOID: gives the amount back (void credit notes count nowhere), takes it out of
    the rollup and makes the invoice's sync due (Stripe voids it too). Caller commits."""
    assert note.id is not None
    invoice = get_for_update(session, note.invoice_id)
    note = get_credit_note_for_update(session, note.id)
    if note.status != CreditNoteStatus.ISSUED:
        raise InvalidTransition(
            f"credit note {note.number} is already void", field=("creditNoteId",)
        )
    note.status = CreditNoteStatus.VOID
    note.voided_at = now
    session.flush()
    rollup.apply_credit(session, invoice, -note.total_cents, shards=rollup_shards)
    _make_sync_due(session, note.invoice_id, now=now)
    session.flush()
    return note


def get_credit_note_for_update(session: Session, credit_note_id: int) -> tables.CreditNote:
    stmt = (
        select(tables.CreditNote)
        .where(tables.CreditNote.id == credit_note_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    note = session.exec(stmt).first()
    if note is None:
        raise NotFound("credit note not found", field=("creditNoteId",))
    return note


def lines_of(
    session: Session, credit_note_ids: Sequence[int]
) -> dict[int, list[tables.CreditNoteLine]]:
    """Lines per credit note id, in the order they were written."""
    out: dict[int, list[tables.CreditNoteLine]] = {i: [] for i in credit_note_ids}
    if credit_note_ids:
        line = tables.CreditNoteLine
        for row in session.exec(
            select(line)
            .where(col(line.credit_note_id).in_(list(credit_note_ids)))
            .order_by(col(line.id))
        ):
            out[row.credit_note_id].append(row)
    return out


def invoice_by_ref(session: Session, ref: str) -> tables.Invoice:
    """An invoice by public id (inv_...) or number (ACME-0007), for operators' tools."""
    inv = tables.Invoice
    match = inv.public_id == ref if "_" in ref else inv.number == ref.upper()
    found = session.exec(select(inv).where(match)).first()
    if found is None:
        raise NotFound(f"no invoice {ref!r}", field=("invoiceId",))
    return found


def credit_note_by_ref(session: Session, ref: str) -> tables.CreditNote:
    """A credit note by public id (cn_...) or number (ACME-0007-CN1), for operators' tools."""
    cn = tables.CreditNote
    match = cn.public_id == ref if "_" in ref else cn.number == ref.upper()
    found = session.exec(select(cn).where(match)).first()
    if found is None:
        raise NotFound(f"no credit note {ref!r}", field=("creditNoteId",))
    return found


def listing(
    session: Session,
    *,
    organization_slug: str | None = None,
    invoice_ref: str | None = None,
    limit: int = 50,
) -> list[tables.CreditNote]:
    """Newest first, of one organization or invoice, or of the platform."""
    cn = tables.CreditNote
    stmt = select(cn)
    if invoice_ref:
        stmt = stmt.where(cn.invoice_id == invoice_by_ref(session, invoice_ref).id)
    if organization_slug:
        org = session.exec(
            select(tables.Organization).where(tables.Organization.slug == organization_slug)
        ).first()
        if org is None:
            raise NotFound(f"no organization {organization_slug!r}", field=("organizationSlug",))
        stmt = stmt.where(cn.organization_id == org.id)
    return list(session.exec(stmt.order_by(col(cn.id).desc()).limit(limit)))


def _make_sync_due(session: Session, invoice_id: int, *, now: datetime) -> None:
    """Credit notes go to Stripe through their invoice's outbox row (sync/credit_notes.py): one
    lease per invoice orders the steps, so a credit note is created only after its invoice is
    finalized on Stripe, and waits while the invoice is still syncing."""
    row = outbox.get(session, invoice_id, for_update=True)
    if row is not None:
        outbox.make_due(row, now=now, reset_attempts=row.state == tables.SyncStatus.FAILED)
