"""Mutations: each one transaction around one domain call, then (after commit) the sync enqueue.

Writes to invoices are the platform's (admin tokens: the metering pipeline, support); members
read their bills. resyncInvoice is open to members for their own invoices: it is idempotent and
can never create a second Stripe invoice, so a developer may nudge a stuck sync themselves.
"""

from __future__ import annotations

import strawberry
from sqlmodel import Session

from gql.core import permissions
from gql.core.context import Info
from gql.core.errors import UserError
from gql.core.idempotency import register_entity
from gql.core.mutation import mutation
from gql.core.permissions import IsAuthenticated, IsPlatformAdmin
from gql.invoices.inputs import (
    AddLineItemsInput,
    CreateInvoiceInput,
    InvoiceIdInput,
    ResyncInvoiceInput,
    RetryFailedSyncsInput,
)
from gql.invoices.types import Invoice
from models import tables
from models.invoices import lifecycle
from models.sync_state import outbox, recreate


@strawberry.type(description="Result of an invoice mutation: the invoice, or why nothing changed.")
class InvoicePayload:
    invoice: Invoice | None = strawberry.field(
        default=None, description="The invoice after the change."
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Empty on success; otherwise nothing was written."
    )


@strawberry.type(description="Result of retryFailedSyncs.")
class RetryFailedSyncsPayload:
    count: int = strawberry.field(default=0, description="FAILED invoices put back to PENDING.")
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Why nothing changed."
    )


def _ok(invoice: tables.Invoice) -> InvoicePayload:
    return InvoicePayload(invoice=Invoice.from_row(invoice))


def _load_invoice(session: Session, invoice_id: int) -> Invoice | None:
    row = session.get(tables.Invoice, invoice_id)
    return Invoice.from_row(row) if row else None


register_entity(Invoice, "invoice", key=lambda i: i.row.id or 0, load=_load_invoice)


@strawberry.type
class InvoiceMutations:
    @mutation(
        InvoicePayload,
        description="Create a DRAFT invoice (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def create_invoice(self, info: Info, input: CreateInvoiceInput) -> InvoicePayload:
        ctx = info.context
        with ctx.transaction() as s:
            org = permissions.organization_or_not_found(ctx, input.organization_slug)
            inv = lifecycle.create_draft(
                s,
                org,
                currency=input.currency,
                period_start=input.period_start,
                period_end=input.period_end,
                due_date=input.due_date,
                now=ctx.now(),
            )
        return _ok(inv)

    @mutation(
        InvoicePayload,
        description="Append lines to a DRAFT invoice, all or none (admin; at most 1,000 per call).",
        permission_classes=[IsPlatformAdmin],
    )
    def add_line_items(self, info: Info, input: AddLineItemsInput) -> InvoicePayload:
        ctx = info.context
        with ctx.transaction() as s:
            inv = permissions.invoice_or_not_found(ctx, str(input.invoice_id))
            lifecycle.add_lines(s, inv, [i.to_domain() for i in input.items], now=ctx.now())
            inv = lifecycle.get_for_update(s, inv.id or 0)
        return _ok(inv)

    @mutation(
        InvoicePayload,
        description="DRAFT -> OPEN: number it, freeze it, count it, and queue the Stripe sync (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def finalize_invoice(self, info: Info, input: InvoiceIdInput) -> InvoicePayload:
        ctx = info.context
        with ctx.transaction() as s:
            inv = lifecycle.finalize(
                s,
                permissions.invoice_or_not_found(ctx, str(input.invoice_id)),
                now=ctx.now(),
                rollup_shards=ctx.rollup_shards,
            )
            ctx.sync_after_commit(inv.id or 0)
        return _ok(inv)

    @mutation(
        InvoicePayload,
        description="OPEN or UNCOLLECTIBLE -> PAID (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def mark_invoice_paid(self, info: Info, input: InvoiceIdInput) -> InvoicePayload:
        ctx = info.context
        with ctx.transaction() as s:
            inv = lifecycle.mark_paid(
                s,
                permissions.invoice_or_not_found(ctx, str(input.invoice_id)),
                now=ctx.now(),
                paid_on=lifecycle.PaidOn.HERE,
            )
            ctx.sync_after_commit(inv.id or 0)  # tells Stripe: pay with paid_out_of_band
        return _ok(inv)

    @mutation(
        InvoicePayload,
        description="OPEN -> UNCOLLECTIBLE (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def mark_invoice_uncollectible(self, info: Info, input: InvoiceIdInput) -> InvoicePayload:
        ctx = info.context
        with ctx.transaction() as s:
            inv = lifecycle.mark_uncollectible(
                s, permissions.invoice_or_not_found(ctx, str(input.invoice_id)), now=ctx.now()
            )
        return _ok(inv)

    @mutation(
        InvoicePayload,
        description="OPEN or UNCOLLECTIBLE -> VOID: out of the monthly totals, and voided on Stripe (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def void_invoice(self, info: Info, input: InvoiceIdInput) -> InvoicePayload:
        ctx = info.context
        with ctx.transaction() as s:
            inv = lifecycle.void(
                s,
                permissions.invoice_or_not_found(ctx, str(input.invoice_id)),
                now=ctx.now(),
                rollup_shards=ctx.rollup_shards,
            )
            ctx.sync_after_commit(inv.id or 0)
        return _ok(inv)

    @mutation(
        InvoicePayload,
        description=(
            "Force a resync: FAILED goes back to PENDING with attempts reset; SYNCED is re-verified "
            "against Stripe and repaired. Never creates a second Stripe invoice."
        ),
        permission_classes=[IsAuthenticated],
    )
    def resync_invoice(self, info: Info, input: ResyncInvoiceInput) -> InvoicePayload:
        ctx = info.context
        with ctx.transaction() as s:
            inv = permissions.invoice_or_not_found(ctx, str(input.invoice_id))
            if input.recreate:
                recreate.request_recreate(s, inv, now=ctx.now())
            else:
                outbox.request_resync(s, inv, now=ctx.now())
            ctx.sync_after_commit(inv.id or 0)
        return _ok(inv)

    @mutation(
        RetryFailedSyncsPayload,
        description="Re-queue every FAILED sync of one organization or of the platform (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def retry_failed_syncs(
        self, info: Info, input: RetryFailedSyncsInput
    ) -> RetryFailedSyncsPayload:
        ctx = info.context
        with ctx.transaction() as s:
            org_id = (
                permissions.organization_or_not_found(ctx, input.organization_slug).id
                if input.organization_slug
                else None
            )
            count = outbox.retry_failed(s, organization_id=org_id, now=ctx.now())
        # No enqueue per invoice: the rows are due now, and the sweeper picks them up within
        # seconds in bounded batches, which is kinder to Stripe's rate limit than a burst.
        return RetryFailedSyncsPayload(count=count)
