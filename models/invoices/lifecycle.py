"""Invoice lifecycle: draft -> open -> paid | void | uncollectible.

Each function takes a Session, changes state, raises a DomainError on bad input or an illegal
transition, and never commits: the caller owns the transaction, so a finalize (status, number,
totals, outbox row, rollup delta) is all or nothing. The database enforces the same lifecycle
and the immutability of finalized invoices with triggers; these checks exist to give the
caller a clear, coded error first.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from models import rollup, tables
from models.errors import (
    DomainError,
    EmptyInvoice,
    InvalidPeriod,
    InvalidTransition,
    InvalidValue,
    InvoiceNotDraft,
    NegativePrice,
    NegativeQuantity,
    NotFound,
    TooManyItems,
    UsageLinesMetered,
)
from models.ids import new_public_id
from models.invoices import numbering
from models.money import (
    QUANTITY_MAX,
    QUANTITY_PLACES,
    UNIT_PRICE_MAX,
    UNIT_PRICE_PLACES,
    line_amount_cents,
    normalize_currency,
    parse_decimal,
)
from models.sync_state import outbox
from models.tables import InvoiceStatus, LineItemKind
from models.webhooks_out import events as webhook_events

MAX_ITEMS_PER_CALL = 1_000
MAX_ITEMS_PER_INVOICE = 20_000
MAX_TEXT = 500
MAX_METADATA_KEYS = 50
MAX_METADATA_BYTES = 16_384  # as JSON
MAX_METADATA_DEPTH = 5  # the object itself is level 1
DEFAULT_PAYMENT_TERMS = timedelta(days=14)
CHARGE_KINDS = (LineItemKind.USAGE, LineItemKind.SUBSCRIPTION, LineItemKind.ONE_OFF)


@dataclass(frozen=True)
class LineInput:
    """One line to add, as a client states it. Validated by `add_lines`, not by its maker."""

    kind: LineItemKind
    description: str
    product: str
    unit: str
    quantity: Decimal | str
    unit_price: Decimal | str
    app: str | None = None
    region: str | None = None
    period_start: date | None = None
    period_end: date | None = None
    metadata: Mapping[str, Any] = field(default_factory=dict)


def get_for_update(session: Session, invoice_id: int) -> tables.Invoice:
    """The invoice row, locked until the caller's transaction ends, re-read from the database."""
    stmt = (
        select(tables.Invoice)
        .where(tables.Invoice.id == invoice_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    invoice = session.exec(stmt).first()
    if invoice is None:
        raise NotFound("invoice not found", field=("invoiceId",))
    return invoice


def create_draft(
    session: Session,
    organization: tables.Organization,
    *,
    currency: str,
    period_start: date,
    period_end: date,
    due_date: date | None = None,
    now: datetime,
) -> tables.Invoice:
    """A new DRAFT invoice with no lines. Caller commits."""
    assert organization.id is not None
    code = normalize_currency(currency)
    if period_start >= period_end:
        raise InvalidPeriod(
            "periodEnd must be after periodStart (the period is [start, end))",
            field=("periodEnd",),
        )
    if due_date is not None and due_date < period_start:
        raise InvalidPeriod("dueDate cannot be before periodStart", field=("dueDate",))
    invoice = tables.Invoice(
        public_id=new_public_id("inv"),
        organization_id=organization.id,
        status=InvoiceStatus.DRAFT,
        currency=code,
        period_start=period_start,
        period_end=period_end,
        due_date=due_date,
        created_at=now,
        updated_at=now,
    )
    session.add(invoice)
    session.flush()
    return invoice


def _text(value: str | None, name: str, *, required: bool) -> str | None:
    if value is None or not value.strip():
        if required:
            raise InvalidValue(f"{name} is required", field=(name,))
        return None
    if "\x00" in value:
        raise InvalidValue(f"{name} cannot contain NUL characters", field=(name,))
    if not _encodable(value):
        raise InvalidValue(f"{name} contains a lone UTF-16 surrogate", field=(name,))
    if len(value) > MAX_TEXT:
        raise InvalidValue(f"{name} is longer than {MAX_TEXT} characters", field=(name,))
    return value.strip()


def _encodable(value: str) -> bool:
    """PostgreSQL text is UTF-8: a lone surrogate ("\\ud800" in JSON) cannot be stored."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _metadata_problem(value: Any) -> str | None:
    """Why metadata cannot be stored (too deep, too large, unencodable), or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth > MAX_METADATA_DEPTH:
                return f"metadata is nested deeper than {MAX_METADATA_DEPTH} levels"
            children = [*item.keys(), *item.values()] if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
        elif isinstance(item, str) and not _encodable(item):
            return "metadata contains a lone UTF-16 surrogate"
    if len(json.dumps(value, ensure_ascii=False)) > MAX_METADATA_BYTES:
        return f"metadata is larger than {MAX_METADATA_BYTES} bytes as JSON"
    return None


def line_values(line: LineInput) -> dict[str, Any]:
    """Column values of one valid line (its amount computed, once, here), or the DomainError
    for its first bad field. `add_lines` and the set-based close (`close_chunk`) both use it."""
    try:
        kind = LineItemKind(line.kind)
    except ValueError:
        raise InvalidValue(f"unknown line kind {line.kind!r}", field=("kind",)) from None
    quantity = parse_decimal(
        line.quantity, field="quantity", places=QUANTITY_PLACES, maximum=QUANTITY_MAX
    )
    if quantity < 0:
        raise NegativeQuantity(
            "quantity cannot be negative; credits carry a negative unit price",
            field=("quantity",),
        )
    unit_price = parse_decimal(
        line.unit_price, field="unitPrice", places=UNIT_PRICE_PLACES, maximum=UNIT_PRICE_MAX
    )
    if kind in CHARGE_KINDS and unit_price < 0:
        raise NegativePrice(
            f"{kind.value} lines cannot have a negative unit price; "
            "use a CREDIT or ADJUSTMENT line",
            field=("unitPrice",),
        )
    if kind == LineItemKind.CREDIT and unit_price > 0:
        raise InvalidValue(
            "a CREDIT line needs a negative (or zero) unit price", field=("unitPrice",)
        )
    if line.period_start and line.period_end and line.period_start >= line.period_end:
        raise InvalidPeriod("periodEnd must be after periodStart", field=("periodEnd",))
    if not isinstance(line.metadata, Mapping):
        raise InvalidValue("metadata must be a JSON object", field=("metadata",))
    metadata = dict(line.metadata)
    if len(metadata) > MAX_METADATA_KEYS or not all(isinstance(k, str) for k in metadata):
        raise InvalidValue(
            f"metadata must be an object with at most {MAX_METADATA_KEYS} string keys",
            field=("metadata",),
        )
    problem = _metadata_problem(metadata)
    if problem is not None:
        raise InvalidValue(problem, field=("metadata",))
    return {
        "kind": kind.value,
        "description": _text(line.description, "description", required=True),
        "product": _text(line.product, "product", required=True),
        "unit": _text(line.unit, "unit", required=True),
        "app": _text(line.app, "app", required=False),
        "region": _text(line.region, "region", required=False),
        "quantity": quantity,
        "unit_price": unit_price,
        "amount_cents": line_amount_cents(quantity, unit_price),
        "period_start": line.period_start,
        "period_end": line.period_end,
        "metadata_": metadata,
    }


def add_lines(
    session: Session, invoice: tables.Invoice, lines: Sequence[LineInput], *, now: datetime
) -> list[tables.InvoiceItem]:
    """Append lines to a DRAFT invoice; each amount is computed once, here. Caller commits.

    All lines are validated before any is written, so one bad line rejects the whole call.
    Raises InvoiceNotDraft, TooManyItems, or the first bad line's error with its index in the
    field path (`items.3.quantity`), carrying every other bad line's error in `also`.
    """
    assert invoice.id is not None
    invoice_id: int = invoice.id
    invoice = get_for_update(session, invoice_id)
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvoiceNotDraft(
            f"invoice {invoice.number or invoice.public_id} is {invoice.status}; lines can only "
            "be added to a draft (corrections go on a new invoice as credits or adjustments)",
            field=("invoiceId",),
        )
    if not lines:
        raise InvalidValue("items cannot be empty", field=("items",))
    if any(line.kind == LineItemKind.USAGE for line in lines) and _is_usage_draft(
        session, invoice_id
    ):
        # Its usage lines are aggregates of recorded events (`billing usage verify` checks them
        # against the events); a hand-written usage line would be invisible to that check.
        raise UsageLinesMetered(
            "this draft is fed by usage ingestion: record usage events instead of USAGE lines "
            "(one-off, subscription, credit and adjustment lines can still be added)",
            field=("items",),
        )
    if len(lines) > MAX_ITEMS_PER_CALL:
        raise TooManyItems(f"at most {MAX_ITEMS_PER_CALL} items per call", field=("items",))
    if invoice.line_item_count + len(lines) > MAX_ITEMS_PER_INVOICE:
        raise TooManyItems(
            f"an invoice holds at most {MAX_ITEMS_PER_INVOICE} line items", field=("items",)
        )
    values: list[dict[str, Any]] = []
    errors: list[DomainError] = []
    for i, line in enumerate(lines):
        try:
            values.append(line_values(line))
        except DomainError as e:
            errors.append(e.at("items", str(i)))
    if errors:
        first, first.also = errors[0], errors[1:]
        raise first
    items = [
        tables.InvoiceItem(
            public_id=new_public_id("li"), invoice_id=invoice_id, created_at=now, **v
        )
        for v in values
    ]
    session.add_all(items)
    invoice.line_item_count += len(items)
    invoice.subtotal_cents += sum(item.amount_cents for item in items)
    invoice.total_cents = invoice.subtotal_cents
    invoice.updated_at = now
    session.flush()
    return items


def _is_usage_draft(session: Session, invoice_id: int) -> bool:
    stmt = select(tables.UsageDraft.invoice_id).where(tables.UsageDraft.invoice_id == invoice_id)
    return session.exec(stmt).first() is not None


def finalize(
    session: Session, invoice: tables.Invoice, *, now: datetime, rollup_shards: int
) -> tables.Invoice:
    """DRAFT -> OPEN: totals as the sum of the stored line amounts, the organization's next
    gap-free number, the outbox row (PENDING) and the rollup delta, all in the caller's
    transaction. Caller commits, then enqueues the sync. Raises InvalidTransition, EmptyInvoice,
    Busy."""
    assert invoice.id is not None
    invoice = get_for_update(session, invoice.id)
    if invoice.status != InvoiceStatus.DRAFT:
        raise InvalidTransition(
            f"invoice {invoice.number} is already finalized ({invoice.status})",
            field=("invoiceId",),
        )
    count, subtotal = session.execute(
        sa.select(
            sa.func.count(), sa.func.coalesce(sa.func.sum(tables.InvoiceItem.amount_cents), 0)
        ).where(tables.InvoiceItem.invoice_id == invoice.id)  # type: ignore[arg-type]
    ).one()
    if count == 0:
        raise EmptyInvoice(
            "an invoice needs at least one line item to be finalized", field=("invoiceId",)
        )
    organization = session.get_one(tables.Organization, invoice.organization_id)
    invoice.number = numbering.next_invoice_number(
        session, invoice.organization_id, organization.invoice_prefix
    )
    invoice.line_item_count = int(count)
    invoice.subtotal_cents = int(subtotal)
    invoice.total_cents = int(subtotal)
    invoice.status = InvoiceStatus.OPEN
    invoice.finalized_at = now
    if invoice.due_date is None:
        invoice.due_date = now.date() + DEFAULT_PAYMENT_TERMS
    invoice.updated_at = now
    session.flush()
    outbox.write_pending(session, invoice, now=now)
    assert invoice.id is not None
    webhook_events.emit_finalized(session, [invoice.id], now=now)  # after the flush above
    rollup.apply_delta(session, invoice, +1, shards=rollup_shards)
    session.flush()
    return invoice


def mark_paid(session: Session, invoice: tables.Invoice, *, now: datetime) -> tables.Invoice:
    """OPEN or UNCOLLECTIBLE -> PAID. The rollup already counts it. Caller commits."""
    return _transition(
        session,
        invoice,
        to=InvoiceStatus.PAID,
        allowed=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
        now=now,
        stamp="paid_at",
    )


def mark_uncollectible(
    session: Session, invoice: tables.Invoice, *, now: datetime
) -> tables.Invoice:
    """OPEN -> UNCOLLECTIBLE. Still counted: the money was billed. Caller commits."""
    return _transition(
        session,
        invoice,
        to=InvoiceStatus.UNCOLLECTIBLE,
        allowed=(InvoiceStatus.OPEN,),
        now=now,
        stamp="marked_uncollectible_at",
    )


def void(
    session: Session, invoice: tables.Invoice, *, now: datetime, rollup_shards: int
) -> tables.Invoice:
    """OPEN or UNCOLLECTIBLE -> VOID: removes the invoice from the rollup and makes its sync row
    due again, so the worker voids it on Stripe too. Caller commits, then enqueues the sync."""
    invoice = _transition(
        session,
        invoice,
        to=InvoiceStatus.VOID,
        allowed=(InvoiceStatus.OPEN, InvoiceStatus.UNCOLLECTIBLE),
        now=now,
        stamp="voided_at",
    )
    rollup.apply_delta(session, invoice, -1, shards=rollup_shards)
    assert invoice.id is not None
    row = outbox.get(session, invoice.id, for_update=True)
    if row is not None:
        outbox.make_due(row, now=now, reset_attempts=row.state == tables.SyncStatus.FAILED)
    session.flush()
    return invoice


def _transition(
    session: Session,
    invoice: tables.Invoice,
    *,
    to: InvoiceStatus,
    allowed: tuple[InvoiceStatus, ...],
    now: datetime,
    stamp: str,
) -> tables.Invoice:
    assert invoice.id is not None
    invoice = get_for_update(session, invoice.id)
    if invoice.status not in allowed:
        names = " or ".join(s.value for s in allowed)
        raise InvalidTransition(
            f"invoice {invoice.number or invoice.public_id} is {invoice.status}; only {names} "
            f"invoices can become {to.value}",
            field=("invoiceId",),
        )
    invoice.status = to
    setattr(invoice, stamp, now)
    invoice.updated_at = now
    session.flush()
    return invoice
