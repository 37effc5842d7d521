"""billingRun (admin) and the Organization.spendAlerts resolver."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gql.core.context import Info
from gql.core.errors import bad_input
from gql.core.permissions import IsPlatformAdmin
from gql.cycle.types import BillingRun, SpendAlert
from models import alerts
from models.close import cycle
from models.errors import DomainError


@strawberry.type
class CycleQueries:
    @strawberry.field(
        description=(
            'The month-end close of a period ("2026-11"): progress and failures (admin); null '
            "before its first run."
        ),
        permission_classes=[IsPlatformAdmin],
    )
    def billing_run(
        self,
        info: Info,
        period: Annotated[str, strawberry.argument(description='The month, as "2026-11".')],
    ) -> BillingRun | None:
        try:
            start = cycle.parse_period(period)
        except DomainError as e:
            raise bad_input(e.message) from None
        row = cycle.get_run(info.context.session, start)
        return BillingRun.from_row(row) if row else None


def spend_alerts(info: Info, organization_id: int) -> list[SpendAlert]:
    """Organization.spendAlerts: the organization is already visible to the caller."""
    return [
        SpendAlert.from_state(s) for s in alerts.list_alerts(info.context.session, organization_id)
    ]
