"""The monthly summary a dashboard charts."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gql.core.money import Money


@strawberry.type(
    description=(
        "One month and one currency: finalized invoices counted by billing period start (UTC); "
        "a month that is not complete also counts its drafts so far."
    )
)
class MonthlySummary:
    month: str = strawberry.field(description='Year and month, "2026-03".')
    year: int = strawberry.field(description="Calendar year.")
    month_of_year: int = strawberry.field(description="1 to 12.")
    currency: str = strawberry.field(
        description="ISO 4217 code; amounts are never mixed across currencies."
    )
    invoice_count: int = strawberry.field(
        description="Finalized invoices (open, paid, uncollectible); voids and drafts do not count."
    )
    subtotal: Money = strawberry.field(
        description="Sum of their subtotals (and of the drafts' while the month is not complete)."
    )
    total: Money = strawberry.field(
        description="Sum of their totals (and of the drafts' so far while the month is not complete)."
    )
    complete: bool = strawberry.field(
        description=(
            "False for the current month (its drafts are counted so far), later months, and the "
            "previous month until its close has finalized its drafts; true for closed months."
        )
    )
    credited: Money = strawberry.field(
        description="Issued (not void) credit notes on these invoices, counted in the month of "
        "the invoice's billing period, not the month the credit note was issued: a credit "
        "corrects what was owed for that month."
    )
    net: Money = strawberry.field(
        description="Total minus credited: what was finally owed for the month."
    )


# The `years` argument of both monthlySummary fields.
Years = Annotated[
    list[int],
    strawberry.argument(
        description="Calendar years to cover, such as [2025, 2026]; every month of each is answered."
    ),
]
