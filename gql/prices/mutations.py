"""setPrice (admin)."""

from __future__ import annotations

import strawberry

from gql.core import permissions
from gql.core.context import Info
from gql.core.errors import returns_user_errors
from gql.core.permissions import IsPlatformAdmin
from gql.prices.inputs import SetPriceInput
from gql.prices.types import Price, PricePayload
from models import prices


@strawberry.type
class PriceMutations:
    @strawberry.mutation(
        description="Append a price version from a given time (admin); never edits history.",
        permission_classes=[IsPlatformAdmin],
    )
    @returns_user_errors(PricePayload)
    def set_price(self, info: Info, input: SetPriceInput) -> PricePayload:
        ctx = info.context
        now = ctx.now()
        with ctx.transaction() as s:
            org = (
                permissions.organization_or_not_found(ctx, input.organization_slug)
                if input.organization_slug
                else None
            )
            row = prices.set_price(
                s,
                product=input.product,
                unit=input.unit,
                currency=input.currency,
                unit_price=str(input.unit_price),
                effective_from=input.effective_from or now,
                organization_id=org.id if org else None,
                now=now,
            )
        return PricePayload(price=Price.from_row(row))
