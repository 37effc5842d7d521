"""Stripe's JSON shapes for the mock's objects: every field Stripe's spec makes required, the
optional ones the mock can fill honestly, and nothing Stripe does not send (`spec.py` checks
each answer against the SDK's resource classes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from . import pages
from .store import CreditNote, CreditNoteLine, Customer, Invoice, InvoiceItem

JSON = dict[str, Any]

# Stripe embeds only the first page of lines in an invoice; the rest is behind `lines.url`.
EMBEDDED_LINES = 10


def list_object(
    url: str, data: Sequence[JSON], *, has_more: bool, total: int | None = None
) -> JSON:
    body: JSON = {"object": "list", "data": list(data), "has_more": has_more, "url": url}
    if total is not None:
        body["total_count"] = total
    return body


def deleted(object_name: str, object_id: str) -> JSON:
    return {"id": object_id, "object": object_name, "deleted": True}


def search_result(url: str, data: Sequence[JSON], *, next_page: str | None) -> JSON:
    return {
        "object": "search_result",
        "data": list(data),
        "has_more": next_page is not None,
        "next_page": next_page,
        "url": url,
    }


def customer(c: Customer) -> JSON:
    return {
        "id": c.id,
        "object": "customer",
        "balance": c.balance,
        "created": c.created,
        "currency": None,
        "delinquent": False,
        "description": None,
        "email": c.email,
        "invoice_prefix": c.invoice_prefix,
        "livemode": False,
        "metadata": dict(c.metadata),
        "name": c.name,
        "next_invoice_sequence": c.next_invoice_sequence,
        "phone": None,
        "preferred_locales": [],
        "tax_exempt": "none",
    }


def _period(item: InvoiceItem) -> JSON:
    return {"start": item.period_start, "end": item.period_end}


def line(item: InvoiceItem) -> JSON:
    return {
        "id": item.line_id,
        "object": "line_item",
        "amount": item.amount,
        "currency": item.currency,
        "description": item.description,
        "discount_amounts": [],
        "discountable": True,
        "discounts": [],
        "invoice": item.invoice,
        "livemode": False,
        "metadata": dict(item.metadata),
        "parent": {
            "type": "invoice_item_details",
            "invoice_item_details": {
                "invoice_item": item.id,
                "proration": False,
                "proration_details": {"credited_items": None},
                "subscription": None,
            },
            "subscription_item_details": None,
        },
        "period": _period(item),
        "pretax_credit_amounts": [],
        "pricing": None,
        "quantity": 1,
        "subtotal": item.amount,
        "taxes": [],
    }


def invoice_item(item: InvoiceItem) -> JSON:
    return {
        "id": item.id,
        "object": "invoiceitem",
        "amount": item.amount,
        "currency": item.currency,
        "customer": item.customer,
        "date": item.created,
        "description": item.description,
        "discountable": True,
        "discounts": [],
        "invoice": item.invoice,
        "livemode": False,
        "metadata": dict(item.metadata),
        "parent": None,
        "period": _period(item),
        "pricing": None,
        "proration": False,
        "quantity": 1,
        "quantity_decimal": "1",
        "tax_rates": [],
    }


def invoice(
    inv: Invoice, cust: Customer | None, *, all_lines: bool = False, total_count: bool = False
) -> JSON:
    """`total_count`: only the mock's own admin listing shows a count, never the API."""
    shown = inv.items if all_lines else inv.items[:EMBEDDED_LINES]
    total = inv.total
    # After finalization the customer's balance has been applied: what is left is due.
    due = inv.amount_due_after_balance if inv.amount_due_after_balance is not None else total
    due = max(0, due)
    paid = inv.status == "paid"
    return {
        "id": inv.id,
        "object": "invoice",
        "amount_due": due,
        "amount_overpaid": 0,
        "amount_paid": due if paid and not inv.paid_out_of_band else 0,
        "amount_paid_off_stripe": due if paid and inv.paid_out_of_band else 0,
        "amount_remaining": 0 if inv.status in ("paid", "void") else due,
        "amount_shipping": 0,
        "attempt_count": inv.attempt_count,
        "attempted": inv.attempt_count > 0,
        "auto_advance": inv.auto_advance,
        "automatic_tax": {
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        "collection_method": inv.collection_method,
        "created": inv.created,
        "currency": inv.currency,
        "customer": inv.customer,
        "customer_email": cust.email if cust else None,
        "customer_name": cust.name if cust else None,
        "default_tax_rates": [],
        "description": inv.description,
        "discounts": [],
        "due_date": inv.due_date,
        "effective_at": inv.finalized_at,
        "ending_balance": inv.ending_balance,
        "footer": None,
        "hosted_invoice_url": pages.hosted_url(inv),
        "invoice_pdf": pages.pdf_url(inv),
        "issuer": {"type": "self"},
        "lines": list_object(
            f"/v1/invoices/{inv.id}/lines",
            [line(item) for item in shown],
            has_more=len(shown) < len(inv.items),
            total=len(inv.items) if total_count else None,
        ),
        "livemode": False,
        "metadata": dict(inv.metadata),
        "next_payment_attempt": inv.next_payment_attempt,
        "number": inv.number,
        "payment_settings": {
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        "period_end": inv.created,
        "period_start": inv.created,
        "post_payment_credit_notes_amount": 0,
        "pre_payment_credit_notes_amount": 0,
        "starting_balance": inv.starting_balance,
        "statement_descriptor": None,
        "status": inv.status,
        "status_transitions": {
            "finalized_at": inv.finalized_at,
            "marked_uncollectible_at": inv.marked_uncollectible_at,
            "paid_at": inv.paid_at,
            "voided_at": inv.voided_at,
        },
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_discount_amounts": [],
        "total_excluding_tax": total,
        "total_taxes": [],
        "webhooks_delivered_at": None,
    }


def credit_note_line(line: CreditNoteLine) -> JSON:
    return {
        "id": line.id,
        "object": "credit_note_line_item",
        "amount": line.amount,
        "description": line.description,
        "discount_amount": 0,
        "discount_amounts": [],
        "invoice_line_item": line.invoice_line_item,
        "livemode": False,
        "metadata": dict(line.metadata),
        "pretax_credit_amounts": [],
        "quantity": line.quantity,
        "tax_rates": [],
        "taxes": [],
        "type": line.type,
        "unit_amount": line.amount if line.type == "custom_line_item" else None,
        "unit_amount_decimal": None,
    }


def credit_note(note: CreditNote) -> JSON:
    total = note.total
    post = note.type == "post_payment"
    return {
        "id": note.id,
        "object": "credit_note",
        "amount": total,
        "amount_shipping": 0,
        "created": note.created,
        "currency": note.currency,
        "customer": note.customer,
        "customer_account": None,
        "customer_balance_transaction": None,
        "discount_amount": 0,
        "discount_amounts": [],
        "effective_at": note.created,
        "invoice": note.invoice,
        "lines": list_object(
            f"/v1/credit_notes/{note.id}/lines",
            [credit_note_line(line) for line in note.lines],
            has_more=False,
        ),
        "livemode": False,
        "memo": note.memo,
        "metadata": dict(note.metadata),
        "number": note.number,
        "out_of_band_amount": note.out_of_band_amount if post else None,
        "pdf": f"https://mock.stripe.invalid/credit_notes/{note.id}.pdf",
        "post_payment_amount": total if post else 0,
        "pre_payment_amount": 0 if post else total,
        "pretax_credit_amounts": [],
        "reason": note.reason,
        "refunds": [],
        "shipping_cost": None,
        "status": note.status,
        "subtotal": total,
        "subtotal_excluding_tax": total,
        "total": total,
        "total_excluding_tax": total,
        "total_taxes": [],
        "type": note.type,
        "voided_at": note.voided_at,
    }
