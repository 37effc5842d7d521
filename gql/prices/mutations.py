"""setPrice (admin)."""

from __future__ import annotations

import strawberry
from sqlmodel import Session

from gql.core import permissions
from gql.core.context import Info
from gql.core.idempotency import register_entity
from gql.core.mutation import mutation
from gql.core.permissions import IsPlatformAdmin
from gql.prices.inputs import SetPriceInput
from gql.prices.types import Price, PricePayload
from models import prices, tables


def _load_price(session: Session, price_id: int) -> Price | None:
    row = session.get(tables.Price, price_id)
    return Price.from_row(row) if row else None


register_entity(Price, "price", key=lambda p: p.row.id or 0, load=_load_price)


@strawberry.type
class PriceMutations:
    @mutation(
        PricePayload,
        description="Append a price version from a given time (admin); never edits history.",
        permission_classes=[IsPlatformAdmin],
    )
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
                display_name=input.display_name,
                display_unit=input.display_unit,
                display_factor=(
                    str(input.display_factor) if input.display_factor is not None else None
                ),
            )
        return PricePayload(price=Price.from_row(row))
