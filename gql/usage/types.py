"""Types of usage ingestion and of the month so far."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gql.core.errors import UserError
from gql.core.money import Money, money
from gql.invoices.types import Invoice
from models.usage import upcoming


@strawberry.type(description="Result of recordUsage.")
class RecordUsagePayload:
    accepted: int = strawberry.field(default=0, description="Events recorded now.")
    duplicates: int = strawberry.field(
        default=0, description="Events already recorded with the same payload: counted once."
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list,
        description='One per refused event, with its path, such as ["events", "3", "quantity"].',
    )


@strawberry.type(description="Part of the month so far: one product, app or region.")
class UpcomingGroup:
    name: str | None = strawberry.field(description="Product, app or region; null for none.")
    total: Money = strawberry.field(description="Sum of its lines so far.")
    projected_total: Money = strawberry.field(description="Its projection to period end.")


@strawberry.type(
    description=(
        "The month so far: the current draft, read from its aggregated lines (never from events). "
        "Each breakdown adds up to `total`."
    )
)
class UpcomingInvoice:
    invoice: Invoice = strawberry.field(description="The current period's draft invoice.")
    as_of: datetime = strawberry.field(description="When this was computed.")
    total: Money = strawberry.field(description="Sum of the draft's line amounts so far.")
    projected_total: Money = strawberry.field(
        description=(
            "Total at period end if each usage line keeps its run rate: quantity / time since its "
            "first usage (at least 1 hour) x time left; lines idle for 24 hours are not projected."
        )
    )
    by_product: list[UpcomingGroup] = strawberry.field(description="Per product, largest first.")
    by_app: list[UpcomingGroup] = strawberry.field(description="Per app, largest first.")
    by_region: list[UpcomingGroup] = strawberry.field(description="Per region, largest first.")

    @classmethod
    def from_domain(cls, u: upcoming.Upcoming) -> UpcomingInvoice:
        currency = u.invoice.currency.strip()

        def groups(gs: list[upcoming.Group]) -> list[UpcomingGroup]:
            return [
                UpcomingGroup(
                    name=g.name,
                    total=money(g.total_cents, currency),
                    projected_total=money(g.projected_cents, currency),
                )
                for g in gs
            ]

        return cls(
            invoice=Invoice.from_row(u.invoice),
            as_of=u.as_of,
            total=money(u.total_cents, currency),
            projected_total=money(u.projected_cents, currency),
            by_product=groups(u.by_product),
            by_app=groups(u.by_app),
            by_region=groups(u.by_region),
        )
