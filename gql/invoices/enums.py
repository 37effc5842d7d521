"""The invoice domain's enums, published to GraphQL as they are (never redefined).

Import them by name from here: `strawberry.enum` registers the domain class in place, so this
module must be imported wherever a type or input uses one, and importing the name makes sure.
"""

from __future__ import annotations

import strawberry

from models.tables import InvoiceStatus, LineItemKind, SyncStatus

strawberry.enum(InvoiceStatus, name="InvoiceStatus", description="Lifecycle of an invoice.")
strawberry.enum(
    LineItemKind, name="LineItemKind", description="What kind of charge or credit a line is."
)
strawberry.enum(SyncStatus, name="SyncStatus", description="Where an invoice stands with Stripe.")

__all__ = ["InvoiceStatus", "LineItemKind", "SyncStatus"]
