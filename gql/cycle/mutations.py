"""setSpendAlert (members of the organization, and admins)."""

from __future__ import annotations

import strawberry

from gql.core import permissions
from gql.core.context import Info
from gql.core.errors import returns_user_errors
from gql.core.permissions import IsAuthenticated
from gql.cycle.types import SetSpendAlertInput, SpendAlert, SpendAlertPayload
from models import alerts


@strawberry.type
class CycleMutations:
    @strawberry.mutation(
        description=(
            "Watch an organization's running month: when its draft's total reaches the "
            "threshold, a notification is queued, once per period (members of the organization "
            "and admins; at most 20 thresholds per organization)."
        ),
        permission_classes=[IsAuthenticated],
    )
    @returns_user_errors(SpendAlertPayload)
    def set_spend_alert(self, info: Info, input: SetSpendAlertInput) -> SpendAlertPayload:
        ctx = info.context
        with ctx.transaction() as s:
            # Scoped lookup: another organization reads as missing (NOT_FOUND).
            org = permissions.organization_or_not_found(ctx, input.organization_slug)
            alerts.set_spend_alert(
                s,
                org,
                threshold_cents=int(input.threshold.cents),
                currency=input.threshold.currency,
                now=ctx.now(),
            )
            assert org.id is not None
            states = alerts.list_alerts(s, org.id)
        wanted = (input.threshold.currency.strip().upper(), int(input.threshold.cents))
        state = next(
            x for x in states if (x.alert.currency.strip(), x.alert.threshold_cents) == wanted
        )
        return SpendAlertPayload(spend_alert=SpendAlert.from_state(state))
