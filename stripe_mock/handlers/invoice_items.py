"""`/v1/invoiceitems`: create (on a draft invoice or pending) and list."""

from __future__ import annotations

from collections.abc import Mapping

from .. import shapes
from ..operations import JSON, Operation
from ..pagination import PAGINATION_PARAMS, cursor_page
from ..params import Reader
from ..store import Store
from .lines import read_line


def create_invoice_item(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only(
        "customer",
        "invoice",
        "amount",
        "currency",
        "description",
        "period",
        "metadata",
        "expand",
    )
    item = store.create_invoice_item(
        customer_id=p.required_str("customer"),
        invoice_id=p.str_or_none("invoice"),
        currency=p.currency_or_none("currency"),
        line=read_line(p),
    )
    return shapes.invoice_item(item)


def list_invoice_items(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("invoice", "expand", *PAGINATION_PARAMS)
    items = store.list_invoice_items(invoice=p.str_or_none("invoice"))
    page, has_more = cursor_page(items, lambda i: i.id, p, kind="invoiceitem")
    return shapes.list_object(
        "/v1/invoiceitems", [shapes.invoice_item(i) for i in page], has_more=has_more
    )


OPERATIONS = (
    Operation("POST", "/v1/invoiceitems", create_invoice_item),
    Operation("GET", "/v1/invoiceitems", list_invoice_items),
)
