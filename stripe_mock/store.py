"""The mock's objects in memory and the state changes Stripe allows on them.

Callers hold `Store.lock` around every call and never across an `await`, so each request's
reads and writes are atomic with respect to the others.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from . import errors
from .ids import new_id, new_invoice_prefix
from .persist import Journal

# Stripe's Smart Retries try a failed payment again a few days later.
PAYMENT_RETRY_SECONDS = 3 * 86400


@dataclass
class Customer:
    id: str
    created: int
    visible_at: float
    email: str | None
    name: str | None
    metadata: dict[str, str]
    invoice_prefix: str
    next_invoice_sequence: int = 1
    # Negative: credit the customer holds, applied to its next invoices (Stripe's sign).
    balance: int = 0


@dataclass
class InvoiceItem:
    """A one-off amount; on an invoice it shows as the line `line_id`."""

    id: str
    line_id: str
    created: int
    customer: str
    invoice: str | None
    amount: int
    currency: str
    description: str | None
    period_start: int
    period_end: int
    metadata: dict[str, str]


@dataclass
class Invoice:
    id: str
    created: int
    visible_at: float
    customer: str
    currency: str
    auto_advance: bool
    collection_method: str
    due_date: int | None
    description: str | None
    metadata: dict[str, str]
    status: str = "draft"
    number: str | None = None
    items: list[InvoiceItem] = field(default_factory=list)
    finalized_at: int | None = None
    paid_at: int | None = None
    voided_at: int | None = None
    marked_uncollectible_at: int | None = None
    starting_balance: int = 0
    ending_balance: int | None = None
    # What is left to collect after the customer's balance was applied at finalization.
    amount_due_after_balance: int | None = None
    paid_out_of_band: bool = False
    attempt_count: int = 0
    next_payment_attempt: int | None = None

    @property
    def total(self) -> int:
        # Integers only: Stripe amounts are in the currency's smallest unit.
        return sum(item.amount for item in self.items)


@dataclass
class CreditNoteLine:
    id: str
    type: str  # invoice_line_item | custom_line_item
    amount: int
    description: str | None
    invoice_line_item: str | None
    quantity: int | None
    metadata: dict[str, str]


@dataclass
class CreditNote:
    """Stripe's credit note on a finalized invoice: issued, then maybe void."""

    id: str
    number: str
    created: int
    invoice: str
    customer: str
    currency: str
    lines: list[CreditNoteLine]
    memo: str | None
    reason: str | None
    metadata: dict[str, str]
    type: str  # pre_payment | post_payment
    refund_amount: int = 0
    credit_amount: int = 0
    out_of_band_amount: int = 0
    status: str = "issued"
    voided_at: int | None = None

    @property
    def total(self) -> int:
        return sum(line.amount for line in self.lines)


@dataclass(frozen=True)
class NewLine:
    amount: int
    description: str | None = None
    period: tuple[int, int] | None = None
    metadata: dict[str, str] = field(default_factory=dict)


def merge_metadata(current: dict[str, str], update: dict[str, str]) -> dict[str, str]:
    """Stripe merges metadata on update; an empty value removes the key."""
    merged = dict(current)
    for key, value in update.items():
        if value == "":
            merged.pop(key, None)
        else:
            merged[key] = value
    return merged


class Store:
    def __init__(self, *, search_lag_seconds: float = 0.0, journal: Journal | None = None) -> None:
        self.lock = threading.RLock()
        self.search_lag_seconds = search_lag_seconds
        # Dicts keep insertion order, which is creation order: lists are served newest first.
        self.customers: dict[str, Customer] = {}
        self.invoices: dict[str, Invoice] = {}
        self.invoice_items: dict[str, InvoiceItem] = {}
        self.credit_notes: dict[str, CreditNote] = {}
        # (event type, invoice or credit note) of the changes a request made, drained under the lock by the
        # caller, which turns them into webhook events with the object as it is at that moment.
        self.events: list[tuple[str, Invoice | CreditNote]] = []
        self.unsupported_currencies: set[str] = set()
        self.journal = journal
        if journal is not None:
            journal.restore(self)

    def _saved(self, *objects: Customer | Invoice | InvoiceItem) -> None:
        if self.journal is not None:
            for obj in objects:
                self.journal.put(obj)

    def _emit(self, event_type: str, obj: Invoice | CreditNote) -> None:
        self.events.append((event_type, obj))

    def restore(self, kind: str, record: dict[str, Any]) -> None:
        """Put back one object read from the journal (later records replace earlier ones)."""
        if kind == "customer":
            self.customers[record["id"]] = Customer(**record)
        elif kind == "item":
            self.invoice_items[record["id"]] = InvoiceItem(**record)
        elif kind == "invoice":
            item_ids = record.pop("item_ids")
            invoice = Invoice(**record)
            invoice.items = [self.invoice_items[i] for i in item_ids if i in self.invoice_items]
            self.invoices[invoice.id] = invoice
        elif kind == "deleted_invoice":
            self.invoices.pop(record["id"], None)

    def _visible_at(self) -> float:
        return time.monotonic() + self.search_lag_seconds

    # Customers

    def create_customer(
        self, *, email: str | None, name: str | None, metadata: dict[str, str]
    ) -> Customer:
        customer = Customer(
            id=new_id("cus_", 14),
            created=int(time.time()),
            visible_at=self._visible_at(),
            email=email,
            name=name,
            metadata=merge_metadata({}, metadata),
            invoice_prefix=new_invoice_prefix(),
        )
        self.customers[customer.id] = customer
        self._saved(customer)
        return customer

    def customer(self, customer_id: str, *, param: str | None = None) -> Customer:
        found = self.customers.get(customer_id)
        if found is None:
            raise errors.missing("customer", customer_id, param=param)
        return found

    def list_customers(self, *, email: str | None = None) -> list[Customer]:
        """Consistent, newest first: unlike search, a list sees every write at once."""
        return [c for c in reversed(self.customers.values()) if email is None or c.email == email]

    def searchable_customers(self) -> list[Customer]:
        now = time.monotonic()
        return [c for c in reversed(self.customers.values()) if c.visible_at <= now]

    # Invoices

    def create_invoice(
        self,
        *,
        customer_id: str,
        currency: str | None,
        auto_advance: bool,
        collection_method: str,
        due_date: int | None,
        description: str | None,
        metadata: dict[str, str],
        include_pending: bool,
    ) -> Invoice:
        customer = self.customer(customer_id, param="customer")
        pending = [
            item
            for item in self.invoice_items.values()
            if include_pending and item.customer == customer.id and item.invoice is None
        ]
        currency = currency or (pending[0].currency if pending else "usd")
        pending = [item for item in pending if item.currency == currency]
        if len(pending) > errors.MAX_INVOICE_LINES:
            raise errors.line_limit("(new invoice)", 0, len(pending))
        invoice = Invoice(
            id=new_id("in_"),
            created=int(time.time()),
            visible_at=self._visible_at(),
            customer=customer.id,
            currency=currency,
            auto_advance=auto_advance,
            collection_method=collection_method,
            due_date=due_date,
            description=description,
            metadata=merge_metadata({}, metadata),
        )
        for item in pending:
            item.invoice = invoice.id
            invoice.items.append(item)
        self.invoices[invoice.id] = invoice
        self._saved(*pending, invoice)
        self._emit("invoice.created", invoice)
        return invoice

    def invoice(self, invoice_id: str, *, param: str | None = None) -> Invoice:
        found = self.invoices.get(invoice_id)
        if found is None:
            raise errors.missing("invoice", invoice_id, param=param)
        return found

    def list_invoices(
        self,
        *,
        customer: str | None = None,
        created_gte: int | None = None,
    ) -> list[Invoice]:
        return [
            inv
            for inv in reversed(self.invoices.values())
            if (customer is None or inv.customer == customer)
            and (created_gte is None or inv.created >= created_gte)
        ]

    def searchable_invoices(self) -> list[Invoice]:
        now = time.monotonic()
        return [inv for inv in reversed(self.invoices.values()) if inv.visible_at <= now]

    def add_lines(
        self, invoice_id: str, lines: list[NewLine], invoice_metadata: dict[str, str] | None
    ) -> Invoice:
        """Draft only, all or nothing: a request that would pass the cap adds no line."""
        invoice = self.invoice(invoice_id)
        self._check_editable(invoice, adding=len(lines))
        added = [self._new_item(invoice.customer, invoice.currency, line) for line in lines]
        for item in added:
            self._attach(invoice, item)
        if invoice_metadata is not None:
            invoice.metadata = merge_metadata(invoice.metadata, invoice_metadata)
        self._saved(*added, invoice)
        return invoice

    def finalize(self, invoice_id: str, *, auto_advance: bool | None) -> Invoice:
        invoice = self.invoice(invoice_id)
        if invoice.status != "draft":
            raise errors.unexpected_state(
                f"Invoice {invoice.id} is already {invoice.status}; only a draft can be finalized."
            )
        customer = self.customer(invoice.customer)
        now = int(time.time())
        invoice.number = f"{customer.invoice_prefix}-{customer.next_invoice_sequence:04d}"
        customer.next_invoice_sequence += 1
        invoice.finalized_at = now
        if auto_advance is not None:
            invoice.auto_advance = auto_advance
        # The customer's balance meets the invoice at finalization, as on Stripe: a negative
        # total (a credit-heavy invoice) is moved to the balance as credit, and credit already
        # held pays (part of) a positive total.
        total = invoice.total
        invoice.starting_balance = customer.balance
        if total < 0:
            customer.balance += total
            due = 0
        else:
            applied = min(total, max(0, -customer.balance))
            customer.balance += applied
            due = total - applied
        invoice.amount_due_after_balance = due
        invoice.ending_balance = customer.balance
        # An invoice with nothing to collect is paid the moment it is finalized, so it can never
        # be voided afterwards.
        if due == 0:
            invoice.status = "paid"
            invoice.paid_at = now
        else:
            invoice.status = "open"
        self._saved(customer, invoice)
        self._emit("invoice.finalized", invoice)
        if invoice.status == "paid":
            self._emit("invoice.paid", invoice)
        return invoice

    def void(self, invoice_id: str) -> Invoice:
        invoice = self.invoice(invoice_id)
        if invoice.status not in ("open", "uncollectible"):
            raise errors.unexpected_state(
                f"Invoice {invoice.id} is {invoice.status}; only open or uncollectible invoices "
                "can be voided."
            )
        invoice.status = "void"
        invoice.voided_at = int(time.time())
        self._saved(invoice)
        self._emit("invoice.voided", invoice)
        return invoice

    def delete_draft(self, invoice_id: str) -> Invoice:
        """Stripe deletes drafts only; their items go with them."""
        invoice = self.invoice(invoice_id)
        if invoice.status != "draft":
            raise errors.unexpected_state(
                f"Invoice {invoice.id} is {invoice.status}; only drafts can be deleted "
                "(void a finalized invoice instead)."
            )
        del self.invoices[invoice.id]
        for item in invoice.items:
            self.invoice_items.pop(item.id, None)
        if self.journal is not None:
            self.journal.put_deleted(invoice.id)
        self._emit("invoice.deleted", invoice)
        return invoice

    def pay(self, invoice_id: str, *, paid_out_of_band: bool, decline: bool = False) -> Invoice:
        """Collect an open (or uncollectible) invoice: out of band (recorded, nothing charged),
        or by charging the customer, which `decline` makes fail like a declined card."""
        invoice = self.invoice(invoice_id)
        if invoice.status not in ("open", "uncollectible"):
            raise errors.unexpected_state(
                f"Invoice {invoice.id} is {invoice.status}; only open or uncollectible invoices "
                "can be paid."
            )
        now = int(time.time())
        if decline and not paid_out_of_band:
            invoice.attempt_count += 1
            invoice.next_payment_attempt = now + PAYMENT_RETRY_SECONDS
            self._saved(invoice)
            self._emit("invoice.payment_failed", invoice)
            raise errors.card_declined()
        if not paid_out_of_band:
            invoice.attempt_count += 1
        invoice.status = "paid"
        invoice.paid_at = now
        invoice.paid_out_of_band = paid_out_of_band
        invoice.next_payment_attempt = None
        self._saved(invoice)
        self._emit("invoice.paid", invoice)
        return invoice

    def mark_uncollectible(self, invoice_id: str) -> Invoice:
        invoice = self.invoice(invoice_id)
        if invoice.status != "open":
            raise errors.unexpected_state(
                f"Invoice {invoice.id} is {invoice.status}; only open invoices can be marked "
                "uncollectible."
            )
        invoice.status = "uncollectible"
        invoice.marked_uncollectible_at = int(time.time())
        self._saved(invoice)
        self._emit("invoice.marked_uncollectible", invoice)
        return invoice

    # Credit notes (not journaled: a restarted mock forgets them, as it forgets idempotency keys)

    def credited(self, invoice: Invoice, *, line_id: str | None = None) -> int:
        """What issued credit notes took off the invoice (or off one of its lines)."""
        return sum(
            line.amount
            for note in self.credit_notes.values()
            if note.invoice == invoice.id and note.status == "issued"
            for line in note.lines
            if line_id is None or line.invoice_line_item == line_id
        )

    def create_credit_note(
        self,
        *,
        invoice_id: str,
        lines: list[CreditNoteLine],
        memo: str | None,
        reason: str | None,
        metadata: dict[str, str],
        refund_amount: int,
        credit_amount: int,
        out_of_band_amount: int,
    ) -> CreditNote:
        """Stripe's rules: a finalized, not void invoice; no line or invoice credited beyond
        its amount; on a paid invoice the total is split into refund, customer balance and out
        of band; on an unpaid one it lowers what is due (and an invoice left owing nothing is
        paid)."""
        invoice = self.invoice(invoice_id, param="invoice")
        if invoice.status not in ("open", "paid", "uncollectible"):
            raise errors.ParamError(
                f"Invoice {invoice.id} is {invoice.status}: credit notes need a finalized invoice "
                "that is not void.",
                param="invoice",
            )
        by_line = {item.line_id: item for item in invoice.items}
        for i, line in enumerate(lines):
            if line.type == "invoice_line_item":
                item = by_line.get(line.invoice_line_item or "")
                if item is None:
                    raise errors.ParamError(
                        f"No line {line.invoice_line_item} on invoice {invoice.id}.",
                        param=f"lines[{i}][invoice_line_item]",
                    )
                taken = self.credited(invoice, line_id=item.line_id) + sum(
                    other.amount
                    for other in lines[:i]
                    if other.invoice_line_item == line.invoice_line_item
                )
                if taken + line.amount > item.amount:
                    raise errors.ParamError(
                        f"The credit note amount for line {item.line_id} exceeds what is left "
                        "to credit on it.",
                        param=f"lines[{i}][amount]",
                    )
        total = sum(line.amount for line in lines)
        if total <= 0 or self.credited(invoice) + total > invoice.total:
            raise errors.ParamError(
                "The credit note total must be positive and at most what is left to credit on "
                "the invoice.",
                param="lines",
            )
        settled = refund_amount + credit_amount + out_of_band_amount
        post_payment = invoice.status == "paid"
        if post_payment and settled != total:
            raise errors.ParamError(
                "The sum of refund_amount, credit_amount and out_of_band_amount must equal the "
                "credit note total for a paid invoice.",
                param="refund_amount",
            )
        if not post_payment and settled:
            raise errors.ParamError(
                "refund_amount, credit_amount and out_of_band_amount apply to paid invoices only.",
                param="refund_amount",
            )
        sequence = 1 + sum(1 for n in self.credit_notes.values() if n.invoice == invoice.id)
        note = CreditNote(
            id=new_id("cn_"),
            number=f"{invoice.number}-CN-{sequence:02d}",
            created=int(time.time()),
            invoice=invoice.id,
            customer=invoice.customer,
            currency=invoice.currency,
            lines=lines,
            memo=memo,
            reason=reason,
            metadata=metadata,
            type="post_payment" if post_payment else "pre_payment",
            refund_amount=refund_amount,
            credit_amount=credit_amount,
            out_of_band_amount=out_of_band_amount,
        )
        self.credit_notes[note.id] = note
        if credit_amount:
            self.customer(invoice.customer).balance -= credit_amount
        self._emit("credit_note.created", note)
        if not post_payment and self.credited(invoice) >= invoice.total:
            # Stripe: an invoice credited down to nothing owes nothing, and is paid.
            invoice.status = "paid"
            invoice.paid_at = int(time.time())
            invoice.next_payment_attempt = None
            self._saved(invoice)
            self._emit("invoice.paid", invoice)
        return note

    def credit_note(self, credit_note_id: str) -> CreditNote:
        note = self.credit_notes.get(credit_note_id)
        if note is None:
            raise errors.missing("credit_note", credit_note_id)
        return note

    def void_credit_note(self, credit_note_id: str) -> CreditNote:
        note = self.credit_note(credit_note_id)
        if note.status != "issued":
            raise errors.unexpected_state(f"Credit note {note.id} is already void.")
        note.status = "void"
        note.voided_at = int(time.time())
        if note.credit_amount:
            self.customer(note.customer).balance += note.credit_amount
        self._emit("credit_note.voided", note)
        return note

    def list_credit_notes(
        self, *, invoice: str | None = None, customer: str | None = None
    ) -> list[CreditNote]:
        """Newest first, like every Stripe list; consistent (no search lag)."""
        return [
            n
            for n in reversed(self.credit_notes.values())
            if (invoice is None or n.invoice == invoice)
            and (customer is None or n.customer == customer)
        ]

    # Invoice items

    def create_invoice_item(
        self, *, customer_id: str, invoice_id: str | None, currency: str | None, line: NewLine
    ) -> InvoiceItem:
        customer = self.customer(customer_id, param="customer")
        if invoice_id is None:
            item = self._new_item(customer.id, currency or "usd", line)
            self.invoice_items[item.id] = item
            self._saved(item)
            return item
        invoice = self.invoice(invoice_id, param="invoice")
        if invoice.customer != customer.id:
            raise errors.ParamError(
                f"Invoice {invoice.id} belongs to another customer than {customer.id}.",
                param="invoice",
            )
        if currency is not None and currency != invoice.currency:
            raise errors.ParamError(
                f"Currency {currency} does not match invoice {invoice.id}'s {invoice.currency}.",
                param="currency",
            )
        self._check_editable(invoice, adding=1)
        item = self._new_item(customer.id, invoice.currency, line)
        self._attach(invoice, item)
        self._saved(item, invoice)
        return item

    def list_invoice_items(self, *, invoice: str | None = None) -> list[InvoiceItem]:
        return [
            item
            for item in reversed(self.invoice_items.values())
            if invoice is None or item.invoice == invoice
        ]

    def _check_editable(self, invoice: Invoice, *, adding: int) -> None:
        if invoice.status != "draft":
            raise errors.not_editable(invoice.id, invoice.status)
        if len(invoice.items) + adding > errors.MAX_INVOICE_LINES:
            raise errors.line_limit(invoice.id, len(invoice.items), adding)

    def _new_item(self, customer_id: str, currency: str, line: NewLine) -> InvoiceItem:
        now = int(time.time())
        # Stripe stamps a one-off item without a period with its creation time.
        start, end = line.period or (now, now)
        return InvoiceItem(
            id=new_id("ii_"),
            line_id=new_id("il_"),
            created=now,
            customer=customer_id,
            invoice=None,
            amount=line.amount,
            currency=currency,
            description=line.description,
            period_start=start,
            period_end=end,
            metadata=merge_metadata({}, line.metadata),
        )

    def _attach(self, invoice: Invoice, item: InvoiceItem) -> None:
        item.invoice = invoice.id
        invoice.items.append(item)
        self.invoice_items[item.id] = item

    def all_customers(self) -> Iterable[Customer]:
        return list(self.customers.values())

    def all_invoices(self) -> Iterable[Invoice]:
        return list(self.invoices.values())
