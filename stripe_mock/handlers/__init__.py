"""Every Stripe endpoint the mock serves, in routing order."""

from __future__ import annotations

from ..operations import Operation
from . import credit_notes, customers, invoice_items, invoices

# `/search` routes come before `/{id}` routes that would otherwise capture them.
OPERATIONS: tuple[Operation, ...] = (
    *customers.OPERATIONS,
    *invoices.OPERATIONS,
    *invoice_items.OPERATIONS,
    *credit_notes.OPERATIONS,
)
ENDPOINTS: tuple[str, ...] = tuple(op.endpoint for op in OPERATIONS)
