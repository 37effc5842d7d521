"""Stripe's JSON shapes for the mock's objects (only the fields the mock can fill honestly;
fields it does not model carry Stripe's value for an object that never set them)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .store import Customer, Invoice, InvoiceItem

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
        "balance": 0,
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
        "tax_rates": [],
    }


def invoice(inv: Invoice, cust: Customer | None, *, all_lines: bool = False) -> JSON:
    shown = inv.items if all_lines else inv.items[:EMBEDDED_LINES]
    total = inv.total
    amount_paid = total if inv.status == "paid" else 0
    return {
        "id": inv.id,
        "object": "invoice",
        "amount_due": total,
        "amount_overpaid": 0,
        "amount_paid": amount_paid,
        "amount_remaining": 0 if inv.status in ("paid", "void") else total - amount_paid,
        "attempt_count": 0,
        "attempted": False,
        "auto_advance": inv.auto_advance,
        "collection_method": inv.collection_method,
        "created": inv.created,
        "currency": inv.currency,
        "customer": inv.customer,
        "customer_email": cust.email if cust else None,
        "customer_name": cust.name if cust else None,
        "description": inv.description,
        "discounts": [],
        "due_date": inv.due_date,
        "effective_at": inv.finalized_at,
        "ending_balance": None if inv.status == "draft" else 0,
        "footer": None,
        "hosted_invoice_url": None,
        "invoice_pdf": None,
        "lines": list_object(
            f"/v1/invoices/{inv.id}/lines",
            [line(item) for item in shown],
            has_more=len(shown) < len(inv.items),
            total=len(inv.items),
        ),
        "livemode": False,
        "metadata": dict(inv.metadata),
        "number": inv.number,
        "period_end": inv.created,
        "period_start": inv.created,
        "starting_balance": 0,
        "statement_descriptor": None,
        "status": inv.status,
        "status_transitions": {
            "finalized_at": inv.finalized_at,
            "marked_uncollectible_at": None,
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
