"""`/v1/invoices`: create, retrieve, list, search, delete, add_lines, lines, finalize, void,
pay, mark_uncollectible."""

from __future__ import annotations

import time
from collections.abc import Mapping

from .. import shapes
from ..errors import ParamError
from ..operations import JSON, Operation
from ..pagination import PAGINATION_PARAMS, cursor_page, search_page
from ..params import Reader
from ..search import parse_query
from ..store import Invoice, Store
from .lines import read_line

_COLLECTION_METHODS = ("charge_automatically", "send_invoice")
_DAY = 86400


def _shape(store: Store, invoice: Invoice) -> JSON:
    return shapes.invoice(invoice, store.customers.get(invoice.customer))


def create_invoice(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only(
        "customer",
        "currency",
        "auto_advance",
        "collection_method",
        "days_until_due",
        "due_date",
        "description",
        "metadata",
        "pending_invoice_items_behavior",
        "expand",
    )
    collection_method = p.choice_or_none("collection_method", _COLLECTION_METHODS)
    behavior = p.choice_or_none("pending_invoice_items_behavior", ("exclude", "include"))
    currency = p.currency_or_none("currency")
    if currency in store.unsupported_currencies:
        raise ParamError(
            f"The currency {currency} is not supported by this account.", param="currency"
        )
    invoice = store.create_invoice(
        customer_id=p.required_str("customer"),
        currency=currency,
        # Stripe leaves API-created drafts alone unless asked to advance them.
        auto_advance=p.bool_or_none("auto_advance") is True,
        collection_method=collection_method or "charge_automatically",
        due_date=_due_date(p, collection_method or "charge_automatically"),
        description=p.str_or_none("description"),
        metadata=p.metadata_or_none() or {},
        include_pending=behavior == "include",
    )
    return _shape(store, invoice)


def _due_date(p: Reader, collection_method: str) -> int | None:
    days = p.int_or_none("days_until_due", minimum=0)
    due = p.int_or_none("due_date", minimum=0)
    if collection_method == "charge_automatically":
        for name, value in (("days_until_due", days), ("due_date", due)):
            if value is not None:
                raise ParamError(
                    f"{name} can only be set when collection_method is send_invoice.", param=name
                )
        return None
    if days is not None and due is not None:
        raise ParamError("Give days_until_due or due_date, not both.", param="due_date")
    if days is None and due is None:
        raise ParamError(
            "Invoices sent with collection_method=send_invoice need days_until_due or due_date.",
            param="days_until_due",
            code="parameter_missing",
        )
    if due is not None and due <= int(time.time()):
        # Stripe: "Invoice due dates must be in the future." A late sync must not send the
        # date it would have sent on time.
        raise ParamError("Invoice due dates must be in the future.", param="due_date")
    return due if due is not None else int(time.time()) + _DAY * (days or 0)


def _include_total_count(p: Reader) -> bool:
    """`include[]=total_count`: the only way to get a count on a Stripe list."""
    return p.has("include")


def retrieve_invoice(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("expand")
    return _shape(store, store.invoice(path["id"]))


def list_invoices(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only(
        "customer",
        "created",
        "include",
        "expand",
        *PAGINATION_PARAMS,
    )
    created = p.child("created")
    created_gte = None
    if created is not None:
        created.only("gte")
        created_gte = created.int_or_none("gte")
    invoices = store.list_invoices(
        customer=p.str_or_none("customer"),
        created_gte=created_gte,
    )
    page, has_more = cursor_page(invoices, lambda i: i.id, p, kind="invoice")
    return shapes.list_object(
        "/v1/invoices",
        [_shape(store, inv) for inv in page],
        has_more=has_more,
        total=len(invoices) if _include_total_count(p) else None,
    )


def search_invoices(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("query", "limit", "page", "expand")
    query = parse_query(p.required_str("query"))
    hits = [inv for inv in store.searchable_invoices() if query.matches(inv.metadata)]
    page, next_page = search_page(hits, p)
    return shapes.search_result(
        "/v1/invoices/search", [_shape(store, inv) for inv in page], next_page=next_page
    )


def add_lines(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("lines", "invoice_metadata", "expand")
    readers = p.children("lines")
    if not readers:
        raise ParamError("Missing required param: lines.", param="lines", code="parameter_missing")
    lines = []
    for reader in readers:
        reader.only("amount", "description", "period", "metadata")
        lines.append(read_line(reader))
    invoice = store.add_lines(path["id"], lines, p.metadata_or_none("invoice_metadata"))
    return _shape(store, invoice)


def list_lines(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("expand", "include", *PAGINATION_PARAMS)
    invoice = store.invoice(path["id"])
    page, has_more = cursor_page(invoice.items, lambda i: i.line_id, p, kind="line item")
    return shapes.list_object(
        f"/v1/invoices/{invoice.id}/lines",
        [shapes.line(i) for i in page],
        has_more=has_more,
        total=len(invoice.items) if _include_total_count(p) else None,
    )


def finalize_invoice(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("auto_advance", "expand")
    return _shape(store, store.finalize(path["id"], auto_advance=p.bool_or_none("auto_advance")))


def void_invoice(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("expand")
    return _shape(store, store.void(path["id"]))


def delete_invoice(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only()
    return shapes.deleted("invoice", store.delete_draft(path["id"]).id)


def pay_invoice(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("paid_out_of_band", "expand")
    out_of_band = p.bool_or_none("paid_out_of_band") is True
    return _shape(store, store.pay(path["id"], paid_out_of_band=out_of_band))


def mark_uncollectible(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("expand")
    return _shape(store, store.mark_uncollectible(path["id"]))


OPERATIONS = (
    Operation("POST", "/v1/invoices", create_invoice),
    Operation("GET", "/v1/invoices", list_invoices),
    Operation("GET", "/v1/invoices/search", search_invoices),
    Operation("GET", "/v1/invoices/{id}", retrieve_invoice),
    Operation("DELETE", "/v1/invoices/{id}", delete_invoice),
    Operation("POST", "/v1/invoices/{id}/add_lines", add_lines),
    Operation("GET", "/v1/invoices/{id}/lines", list_lines),
    Operation("POST", "/v1/invoices/{id}/finalize", finalize_invoice),
    Operation("POST", "/v1/invoices/{id}/void", void_invoice),
    Operation("POST", "/v1/invoices/{id}/pay", pay_invoice),
    Operation("POST", "/v1/invoices/{id}/mark_uncollectible", mark_uncollectible),
)
