"""GraphQL types of the close (BillingRun) and of spend alerts."""

from __future__ import annotations

from datetime import date, datetime

import strawberry

from gql.core.enums import publish
from gql.core.errors import UserError
from gql.core.money import Money, money
from gql.core.scalars import BigInt
from models import tables
from models.alerts import AlertState
from models.tables import SpendAlertKind

publish(
    SpendAlertKind,
    name="SpendAlertKind",
    description="What a spend alert watches.",
    values={
        SpendAlertKind.ACTUAL: "The draft's total so far; evaluated as usage is recorded.",
        SpendAlertKind.FORECAST: (
            "The low end of the draft's month-end projection (upcomingInvoice.projection.low); "
            "evaluated every few minutes, so it fires before the money is spent."
        ),
    },
)


@strawberry.type(description="The month-end close of one period (`billing close-period`).")
class BillingRun:
    period: str = strawberry.field(description='The period closed, "2026-11".')
    started_at: datetime = strawberry.field(description="When the first closer began.")
    finished_at: datetime | None = strawberry.field(
        description="When nothing but failures was left to close; null while running or stalled."
    )
    drafts: int = strawberry.field(description="Drafts of the period (usage and plans).")
    finalized: int = strawberry.field(description="Drafts finalized by the close, each once.")
    skipped: int = strawberry.field(
        description="Empty drafts left as drafts (no zero invoices); closed if usage lands."
    )
    failed: int = strawberry.field(
        description="Drafts whose close failed (see lastError); retried by the next run."
    )
    pending: int = strawberry.field(description="Drafts not dealt with yet.")
    last_error: str | None = strawberry.field(
        description="The latest failure: invoice id, code and message."
    )

    @classmethod
    def from_row(cls, r: tables.BillingRun) -> BillingRun:
        return cls(
            period=f"{r.period_start:%Y-%m}",
            started_at=r.started_at,
            finished_at=r.finished_at,
            drafts=r.drafts,
            finalized=r.finalized,
            skipped=r.skipped,
            failed=r.failed,
            pending=max(0, r.drafts - r.finalized - r.skipped - r.failed),
            last_error=r.last_error,
        )


@strawberry.input(description="An amount of money: minor units and the currency.")
class MoneyInput:
    cents: BigInt = strawberry.field(description="Minor units (cents), as a string or integer.")
    currency: str = strawberry.field(description="ISO 4217 code, any case.")


@strawberry.input(description="A spend threshold for an organization's running month.")
class SetSpendAlertInput:
    organization_slug: str = strawberry.field(description="The organization to watch.")
    threshold: MoneyInput = strawberry.field(
        description=(
            "Fires once per period when the watched amount (see kind) reaches it (at or above)."
        )
    )
    kind: SpendAlertKind = strawberry.field(
        default=SpendAlertKind.ACTUAL,
        description="ACTUAL (default): the total so far; FORECAST: the projection's low end.",
    )


@strawberry.type(description="A spend threshold and its latest firing.")
class SpendAlert:
    id: strawberry.ID = strawberry.field(description="Alert id.")
    threshold: Money = strawberry.field(description="The amount that fires it.")
    kind: SpendAlertKind = strawberry.field(
        description="What it watches: the total so far, or the projection's low end."
    )
    triggered_at: datetime | None = strawberry.field(
        description="When it last fired; null if it never has."
    )
    period: str | None = strawberry.field(
        description='The period it last fired for, "2026-11"; it fires again in a new period.'
    )

    @classmethod
    def from_state(cls, s: AlertState) -> SpendAlert:
        return cls(
            id=strawberry.ID(str(s.alert.id)),
            threshold=money(s.alert.threshold_cents, s.alert.currency),
            kind=SpendAlertKind(s.alert.kind),
            triggered_at=s.triggered_at,
            period=_month(s.period),
        )


def _month(d: date | None) -> str | None:
    return f"{d:%Y-%m}" if d else None


@strawberry.type(description="Result of setSpendAlert.")
class SpendAlertPayload:
    spend_alert: SpendAlert | None = strawberry.field(default=None, description="The alert.")
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Empty on success; otherwise nothing was written."
    )
