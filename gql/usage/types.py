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


PROJECTION_METHOD = (
    "Recurring, one-off and late-usage lines count as they are. Usage billed per unit of time "
    "(machines, volumes) is projected at the month's run rate: amount so far / elapsed share of "
    "the period x remaining share, never from a shorter span, so no single event moves the "
    "projection by more than its amount x (remaining share / elapsed share). Traffic (egress) is "
    "projected from the organization's mean day this month times the days left. The range: low "
    "assumes lines idle for 24 hours stay stopped and traffic at the low end of its daily "
    "variation; high that new machines keep their own rate, traffic at the high end, and some "
    "new usage. Backtest: make bench-forecast (docs/forecast.md)."
)


@strawberry.type(
    description="A projection to period end with its range (" + PROJECTION_METHOD + ")"
)
class Projection:
    total: Money = strawberry.field(description="The projected total at period end.")
    low: Money = strawberry.field(
        description="Low end of the range: what the period ends at if stopped lines stay stopped."
    )
    high: Money = strawberry.field(
        description="High end of the range: new machines at their own rate, more traffic."
    )
    method: str = strawberry.field(
        description='The estimator and its version, such as "run-rate-by-kind/v1".'
    )


@strawberry.type(description="Part of the month so far: one product, app or region.")
class UpcomingGroup:
    name: str | None = strawberry.field(description="Product, app or region; null for none.")
    total: Money = strawberry.field(description="Sum of its lines so far.")
    projected_total: Money = strawberry.field(
        description="Its projection to period end (the sum of its lines' projections)."
    )
    projection: Projection = strawberry.field(description="Its projection with the range.")


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
        description="Projected total at period end: " + PROJECTION_METHOD
    )
    projection: Projection = strawberry.field(
        description="The projection with its low/high range and method."
    )
    by_product: list[UpcomingGroup] = strawberry.field(description="Per product, largest first.")
    by_app: list[UpcomingGroup] = strawberry.field(description="Per app, largest first.")
    by_region: list[UpcomingGroup] = strawberry.field(description="Per region, largest first.")

    @classmethod
    def from_domain(cls, u: upcoming.Upcoming) -> UpcomingInvoice:
        currency = u.invoice.currency.strip()

        def projection(total: int, low: int, high: int) -> Projection:
            return Projection(
                total=money(total, currency),
                low=money(low, currency),
                high=money(high, currency),
                method=u.method,
            )

        def groups(gs: list[upcoming.Group]) -> list[UpcomingGroup]:
            return [
                UpcomingGroup(
                    name=g.name,
                    total=money(g.total_cents, currency),
                    projected_total=money(g.projected_cents, currency),
                    projection=projection(g.projected_cents, g.low_cents, g.high_cents),
                )
                for g in gs
            ]

        return cls(
            invoice=Invoice.from_row(u.invoice),
            as_of=u.as_of,
            total=money(u.total_cents, currency),
            projected_total=money(u.projected_cents, currency),
            projection=projection(u.projected_cents, u.low_cents, u.high_cents),
            by_product=groups(u.by_product),
            by_app=groups(u.by_app),
            by_region=groups(u.by_region),
        )
