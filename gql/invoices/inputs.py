"""Mutation inputs. They carry values only: every rule lives in models/, so the CLI, the seed
and the API enforce the same ones."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any, cast

import strawberry
from strawberry.scalars import JSON

from gql.core.scalars import DecimalString
from gql.invoices.enums import LineItemKind
from models.invoices.lifecycle import LineInput


@strawberry.input(description="A new draft invoice.")
class CreateInvoiceInput:
    organization_slug: str = strawberry.field(description="Organization billed.")
    currency: str = strawberry.field(description="ISO 4217 code, any case; stored upper case.")
    period_start: date = strawberry.field(description="First day of the billing period.")
    period_end: date = strawberry.field(
        description="Day after the period (exclusive); after periodStart."
    )
    due_date: date | None = strawberry.field(
        default=None, description="Payment due date; default 14 days after finalization."
    )


@strawberry.input(description="One line to add to a draft.")
class LineItemInput:
    kind: LineItemKind = strawberry.field(
        description="USAGE, SUBSCRIPTION and ONE_OFF need a unit price >= 0; CREDIT <= 0."
    )
    description: str = strawberry.field(
        description="What the line is for (at most 500 characters)."
    )
    product: str = strawberry.field(description="Product code, such as egress.")
    unit: str = strawberry.field(description="Unit of the quantity: second, GB, GB-month, month...")
    quantity: DecimalString = strawberry.field(
        description="Non-negative, at most 9 decimal places, as a string."
    )
    unit_price: DecimalString = strawberry.field(
        description="Minor units (cents) per unit, at most 12 decimal places, as a string."
    )
    app: str | None = strawberry.field(default=None, description="App the usage belongs to.")
    region: str | None = strawberry.field(default=None, description="Region code.")
    period_start: date | None = strawberry.field(default=None, description="Service period start.")
    period_end: date | None = strawberry.field(
        default=None, description="Service period end (exclusive)."
    )
    metadata: JSON | None = strawberry.field(default=None, description="Object, at most 50 keys.")

    def to_domain(self) -> LineInput:
        return LineInput(
            kind=self.kind,
            description=self.description,
            product=self.product,
            unit=self.unit,
            quantity=str(self.quantity),
            unit_price=str(self.unit_price),
            app=self.app,
            region=self.region,
            period_start=self.period_start,
            period_end=self.period_end,
            metadata=cast(Mapping[str, Any], self.metadata) if self.metadata is not None else {},
        )


@strawberry.input(description="Lines to append to a draft invoice; all or none are added.")
class AddLineItemsInput:
    invoice_id: strawberry.ID = strawberry.field(
        description="Public id or number of a DRAFT invoice."
    )
    items: list[LineItemInput] = strawberry.field(description="1 to 1,000 lines.")


@strawberry.input(description="Names an invoice.")
class InvoiceIdInput:
    invoice_id: strawberry.ID = strawberry.field(description="Public id (inv_...) or number.")


@strawberry.input(description="Names an invoice to resync with Stripe.")
class ResyncInvoiceInput:
    invoice_id: strawberry.ID = strawberry.field(description="Public id (inv_...) or number.")
    recreate: bool = strawberry.field(
        default=False,
        description=(
            "Make a new Stripe invoice on purpose, for an invoice whose Stripe invoice was voided "
            "or deleted on Stripe (sync FAILED with REMOTE_VOIDED or REMOTE_DELETED)."
        ),
    )


@strawberry.input(description="Which FAILED syncs to re-queue.")
class RetryFailedSyncsInput:
    organization_slug: str | None = strawberry.field(
        default=None, description="One organization; omitted: the whole platform."
    )
