"""`/v1/credit_notes`: create (against a finalized invoice and its line ids), list (by invoice
or customer, consistent), retrieve, void."""

from __future__ import annotations

from collections.abc import Mapping

from .. import shapes
from ..errors import ParamError
from ..ids import new_id
from ..operations import JSON, Operation
from ..pagination import PAGINATION_PARAMS, cursor_page
from ..params import Reader
from ..store import CreditNoteLine, Store

_REASONS = ("duplicate", "fraudulent", "order_change", "product_unsatisfactory")
_LINE_TYPES = ("invoice_line_item", "custom_line_item")


def _line(p: Reader) -> CreditNoteLine:
    p.only(
        "type", "invoice_line_item", "amount", "quantity", "unit_amount", "description", "metadata"
    )
    kind = p.choice_or_none("type", _LINE_TYPES)
    if kind is None:
        raise ParamError("Missing required param: type.", param=p.name("type"))
    quantity = p.int_or_none("quantity", minimum=1)
    if kind == "invoice_line_item":
        # The mock takes the amount form only (what the sync sends): a quantity of a Stripe
        # line that is one item at our exact amount would be 1 anyway.
        amount = p.required_int("amount")
        line_item = p.required_str("invoice_line_item")
    else:
        unit = p.required_int("unit_amount")
        amount = unit * (quantity or 1)
        line_item = None
    if amount <= 0:
        raise ParamError("Credit note line amounts must be positive.", param=p.name("amount"))
    return CreditNoteLine(
        id=new_id("cnli_"),
        type=kind,
        amount=amount,
        description=p.str_or_none("description"),
        invoice_line_item=line_item,
        quantity=quantity,
        metadata=p.metadata_or_none() or {},
    )


def create_credit_note(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only(
        "invoice",
        "lines",
        "memo",
        "reason",
        "metadata",
        "refund_amount",
        "credit_amount",
        "out_of_band_amount",
        "expand",
    )
    readers = p.children("lines")
    if not readers:
        # Stripe also takes a bare `amount`; the sync always sends lines.
        raise ParamError("Missing required param: lines.", param="lines", code="parameter_missing")
    note = store.create_credit_note(
        invoice_id=p.required_str("invoice"),
        lines=[_line(r) for r in readers],
        memo=p.str_or_none("memo"),
        reason=p.choice_or_none("reason", _REASONS),
        metadata=p.metadata_or_none() or {},
        refund_amount=p.int_or_none("refund_amount", minimum=0) or 0,
        credit_amount=p.int_or_none("credit_amount", minimum=0) or 0,
        out_of_band_amount=p.int_or_none("out_of_band_amount", minimum=0) or 0,
    )
    return shapes.credit_note(note)


def list_credit_notes(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("invoice", "customer", "expand", *PAGINATION_PARAMS)
    notes = store.list_credit_notes(
        invoice=p.str_or_none("invoice"), customer=p.str_or_none("customer")
    )
    page, has_more = cursor_page(notes, lambda n: n.id, p, kind="credit note")
    return shapes.list_object(
        "/v1/credit_notes", [shapes.credit_note(n) for n in page], has_more=has_more
    )


def retrieve_credit_note(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("expand")
    return shapes.credit_note(store.credit_note(path["id"]))


def void_credit_note(store: Store, path: Mapping[str, str], p: Reader) -> JSON:
    p.only("expand")
    return shapes.credit_note(store.void_credit_note(path["id"]))


OPERATIONS = (
    Operation("POST", "/v1/credit_notes", create_credit_note),
    Operation("GET", "/v1/credit_notes", list_credit_notes),
    Operation("GET", "/v1/credit_notes/{id}", retrieve_credit_note),
    Operation("POST", "/v1/credit_notes/{id}/void", void_credit_note),
)
