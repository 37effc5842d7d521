"""Types of usage ingestion and of the month so far."""

from __future__ import annotations

from datetime import date, datetime

import strawberry

from gql.core.errors import UserError
from gql.core.money import Money, money
from gql.core.scalars import DecimalString
from gql.invoices.enums import LineItemKind
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


@strawberry.type(description="One line of the invoice the close would produce now.")
class UpcomingLine:
    kind: LineItemKind = strawberry.field(
        description="USAGE (from events), SUBSCRIPTION (added by the close), ONE_OFF, CREDIT..."
    )
    description: str = strawberry.field(description="What the line is for, in words.")
    product: str = strawberry.field(description="Product code, such as egress or support-plan.")
    app: str | None = strawberry.field(description="App the usage belongs to, if any.")
    region: str | None = strawberry.field(description="Region code, if any.")
    unit: str = strawberry.field(description="Unit of the quantity.")
    quantity: DecimalString = strawberry.field(description="Quantity in `unit`, exact.")
    unit_price: DecimalString = strawberry.field(
        description="Price of one unit in minor units (cents), exact."
    )
    amount: Money = strawberry.field(
        description="The quantity times unitPrice, rounded half-even to a whole minor unit, once."
    )
    period_start: date | None = strawberry.field(description="Start of its service period.")
    period_end: date | None = strawberry.field(description="End of its service period (exclusive).")


@strawberry.type(
    description=(
        "The invoice `billing close-period` would produce for a period if it ended now: the usage "
        "draft's lines (read from its aggregated lines, never from events) and the recurring "
        "subscription lines the close adds, priced at the period start. Each breakdown adds up "
        "to `total`."
    )
)
class UpcomingInvoice:
    invoice: Invoice | None = strawberry.field(
        description="The period's usage draft; null until its first usage creates it."
    )
    period_start: date = strawberry.field(description="First day of the period.")
    period_end: date = strawberry.field(description="First day after the period.")
    as_of: datetime = strawberry.field(description="When this was computed.")
    total: Money = strawberry.field(
        description=(
            "Total of the invoice the close would produce now: the draft's lines plus the "
            "recurring lines; $0 with no usage and no subscription."
        )
    )
    projected_total: Money = strawberry.field(
        description="Projected total at period end: " + PROJECTION_METHOD
    )
    projection: Projection = strawberry.field(
        description="The projection with its low/high range and method."
    )
    by_product: list[UpcomingGroup] = strawberry.field(description="Per product, largest first.")
    by_app: list[UpcomingGroup] = strawberry.field(description="Per app, largest first.")
    by_region: list[UpcomingGroup] = strawberry.field(description="Per region, largest first.")

    # Built only when asked for (a resolver): the dashboard's panel does not ask, and a typed
    # object per line is most of the cost of a 100-line answer.
    preview: strawberry.Private[upcoming.Upcoming]

    @strawberry.field(
        description="The lines, in invoice order: the draft's, then the recurring ones."
    )
    def lines(self) -> list[UpcomingLine]:
        currency = self.preview.currency
        return [
            UpcomingLine(
                kind=LineItemKind(x.kind),
                description=x.description,
                product=x.product,
                app=x.app,
                region=x.region,
                unit=x.unit,
                quantity=DecimalString(str(x.quantity)),
                unit_price=DecimalString(str(x.unit_price)),
                amount=money(x.amount_cents, currency),
                period_start=x.period_start,
                period_end=x.period_end,
            )
            for x in self.preview.lines
        ]

    @classmethod
    def from_domain(cls, u: upcoming.Upcoming) -> UpcomingInvoice:
        currency = u.currency

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
            invoice=Invoice.from_row(u.invoice) if u.invoice is not None else None,
            period_start=u.period_start,
            period_end=u.period_end,
            as_of=u.as_of,
            total=money(u.total_cents, currency),
            projected_total=money(u.projected_cents, currency),
            projection=projection(u.projected_cents, u.low_cents, u.high_cents),
            by_product=groups(u.by_product),
            by_app=groups(u.by_app),
            by_region=groups(u.by_region),
            preview=u,
        )
