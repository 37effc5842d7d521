"""prices: the price list and its history."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gql.core import permissions
from gql.core.context import Info
from gql.core.errors import bad_input
from gql.core.money import CurrencyFilter
from gql.core.permissions import IsAuthenticated
from gql.prices.types import Price
from models import prices
from models.errors import DomainError


@strawberry.type
class PriceQueries:
    @strawberry.field(
        description=(
            "Every price version, by product and time: list prices, plus the overrides the "
            "caller may see (all for admins, its own organization's for members)."
        ),
        permission_classes=[IsAuthenticated],
    )
    def prices(
        self,
        info: Info,
        product: Annotated[
            str | None,
            strawberry.argument(
                description="Only this product code, such as egress; all when null."
            ),
        ] = None,
        currency: CurrencyFilter = None,
    ) -> list[Price]:
        ctx = info.context
        viewer = ctx.viewer
        try:
            rows = prices.list_prices(ctx.session, product=product, currency=currency)
        except DomainError as e:
            raise bad_input(e.message) from None
        return [
            Price.from_row(r)
            for r in rows
            if r.organization_id is None or permissions.can_see(viewer, r.organization_id)
        ]
