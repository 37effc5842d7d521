"""The invoice domain's enums, published to GraphQL as they are (never redefined).

Import them by name from here: `strawberry.enum` registers the domain class in place, so this
module must be imported wherever a type or input uses one, and importing the name makes sure.
"""

from __future__ import annotations

from gql.core.enums import publish
from models.tables import InvoiceStatus, LineItemKind, PaymentStatus, SyncStatus

publish(
    InvoiceStatus,
    name="InvoiceStatus",
    description="Lifecycle of an invoice.",
    values={
        InvoiceStatus.DRAFT: "Being filled (the month so far); lines may still change.",
        InvoiceStatus.OPEN: "Finalized: numbered, frozen and owed; synced to Stripe.",
        InvoiceStatus.PAID: "Paid in full.",
        InvoiceStatus.VOID: "Cancelled after finalizing; not owed and out of the totals.",
        InvoiceStatus.UNCOLLECTIBLE: "Written off as unlikely to be paid; can still be paid.",
    },
)
publish(
    LineItemKind,
    name="LineItemKind",
    description="What kind of charge or credit a line is.",
    values={
        LineItemKind.USAGE: "Metered usage, compiled from usage events.",
        LineItemKind.SUBSCRIPTION: "A recurring charge of a plan, added at the month-end close.",
        LineItemKind.ONE_OFF: "A single charge added by hand.",
        LineItemKind.CREDIT: "Money given back: a negative (or zero) unit price.",
        LineItemKind.ADJUSTMENT: "A correction of an earlier charge, either sign.",
    },
)
publish(
    SyncStatus,
    name="SyncStatus",
    description="Where an invoice stands with Stripe.",
    values={
        SyncStatus.NOT_REQUIRED: "Nothing to send (a draft).",
        SyncStatus.PENDING: "Waiting for a sync worker.",
        SyncStatus.SYNCING: "A worker is sending it now.",
        SyncStatus.SYNCED: "Stripe has it, with the same lines and total.",
        SyncStatus.RETRYING: "The last attempt failed; another is scheduled (nextAttemptAt).",
        SyncStatus.FAILED: "Gave up after its attempts; an operator resyncs it.",
    },
)
publish(
    PaymentStatus,
    name="PaymentStatus",
    description="Where collecting an invoice stands on Stripe, from its webhook events.",
    values={
        PaymentStatus.PENDING: "Stripe has not collected it yet.",
        PaymentStatus.FAILED: "Stripe's last collection attempt failed; it will try again.",
        PaymentStatus.SUCCEEDED: "Stripe collected it.",
    },
)

__all__ = ["InvoiceStatus", "LineItemKind", "PaymentStatus", "SyncStatus"]
