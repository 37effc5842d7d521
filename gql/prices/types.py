"""Price versions as GraphQL objects."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Annotated

import strawberry

from gql.core.context import Info
from gql.core.errors import UserError
from gql.core.scalars import DecimalString
from gql.organizations.dataloaders import OrganizationByIdLoader
from models import tables
from models.money import format_unit_price

if TYPE_CHECKING:  # only for strawberry.lazy: gql.organizations.types imports the invoice types
    from gql.organizations.types import Organization


@strawberry.type(description="One version of a unit price; versions are never edited.")
class Price:
    row: strawberry.Private[tables.Price]
    id: strawberry.ID = strawberry.field(description="Version id.")
    product: str = strawberry.field(description="Product code, such as machines-shared-cpu.")
    unit: str = strawberry.field(description="Unit priced: second, GB, GB-month, month...")
    currency: str = strawberry.field(description="ISO 4217 code, upper case.")
    unit_price: DecimalString = strawberry.field(
        description="Minor units (cents) per unit, exact, up to 12 decimal places."
    )
    formatted: str = strawberry.field(
        description='For people, in major units: "$0.000000270 / second", "$0.02 / GB".'
    )
    effective_from: datetime = strawberry.field(
        description="In effect from this instant until a newer version starts."
    )
    display_name: str | None = strawberry.field(
        description='What people call the product ("Shared CPU"); line descriptions use it.'
    )
    display_unit: str | None = strawberry.field(
        description="The unit people read the price in (GB-month for a price per GB-second); "
        "null when `unit` is read as it is."
    )
    display_factor: DecimalString | None = strawberry.field(
        description="Units per displayUnit (2592000 seconds in a 30-day month); null with "
        "displayUnit."
    )

    @classmethod
    def from_row(cls, r: tables.Price) -> Price:
        currency = r.currency.strip()
        return cls(
            row=r,
            id=strawberry.ID(str(r.id)),
            product=r.product,
            unit=r.unit,
            currency=currency,
            unit_price=DecimalString(str(r.unit_price)),
            formatted=format_unit_price(r.unit_price, currency, r.unit),
            effective_from=r.effective_from,
            display_name=r.display_name,
            display_unit=r.display_unit,
            display_factor=(
                DecimalString(str(r.display_factor.normalize()))
                if r.display_factor is not None
                else None
            ),
        )

    # Organization is named lazily: its type module imports the invoice types, and the
    # resolver returns the row, from which Organization resolves its fields.
    @strawberry.field(
        description="The organization of an override; null for the list price.",
        graphql_type=Annotated["Organization", strawberry.lazy("gql.organizations.types")] | None,
    )
    def organization(self, info: Info) -> tables.Organization | None:
        if self.row.organization_id is None:
            return None
        return info.context.loader(OrganizationByIdLoader).load(self.row.organization_id)


@strawberry.type(description="Result of setPrice.")
class PricePayload:
    price: Price | None = strawberry.field(default=None, description="The new version.")
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Empty on success; otherwise nothing was written."
    )
