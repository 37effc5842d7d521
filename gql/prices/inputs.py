"""setPrice input."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gql.core.scalars import DecimalString


@strawberry.input(description="A new price version (history is never edited).")
class SetPriceInput:
    product: str = strawberry.field(description="Product code.")
    unit: str = strawberry.field(description="Unit priced; the same as earlier versions'.")
    currency: str = strawberry.field(description="ISO 4217 code, any case.")
    unit_price: DecimalString = strawberry.field(
        description="Minor units (cents) per unit, >= 0, at most 12 decimal places."
    )
    effective_from: datetime | None = strawberry.field(
        default=None,
        description=(
            "When it takes effect; default now. In the past only for a product's first version "
            "(nothing can have been priced before it)."
        ),
    )
    organization_slug: str | None = strawberry.field(
        default=None, description="An override for one organization; omitted: the list price."
    )
    display_name: str | None = strawberry.field(
        default=None,
        description='What people call the product ("Shared CPU"); omitted: kept from the '
        "product's newest version.",
    )
    display_unit: str | None = strawberry.field(
        default=None,
        description="The unit people read (GB-month), with displayFactor; omitted (both): kept "
        "from the product's newest version.",
    )
    display_factor: DecimalString | None = strawberry.field(
        default=None,
        description="Units per displayUnit, > 0, at most 12 decimal places (2592000 seconds "
        "per 30-day month).",
    )
