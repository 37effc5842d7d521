"""setSpendAlert (members of the organization, and admins)."""

from __future__ import annotations

import strawberry
from sqlmodel import Session

from gql.core import permissions
from gql.core.context import Info
from gql.core.idempotency import register_entity
from gql.core.mutation import mutation
from gql.core.permissions import IsAuthenticated
from gql.cycle.types import SetSpendAlertInput, SpendAlert, SpendAlertPayload
from models import alerts, tables


def _load_alert(session: Session, alert_id: int) -> SpendAlert | None:
    row = session.get(tables.SpendAlert, alert_id)
    if row is None:
        return None
    state = next(
        x for x in alerts.list_alerts(session, row.organization_id) if x.alert.id == alert_id
    )
    return SpendAlert.from_state(state)


register_entity(SpendAlert, "spend_alert", key=lambda a: int(a.id), load=_load_alert)


@strawberry.type
class CycleMutations:
    @mutation(
        SpendAlertPayload,
        description=(
            "Watch an organization's running month: when its draft's total (kind ACTUAL) or the "
            "low end of its projection (kind FORECAST) reaches the threshold, a notification is "
            "queued, once per period (members of the organization and admins; at most 20 "
            "thresholds per organization)."
        ),
        permission_classes=[IsAuthenticated],
    )
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
                kind=input.kind,
            )
            assert org.id is not None
            states = alerts.list_alerts(s, org.id)
        wanted = (
            input.threshold.currency.strip().upper(),
            int(input.threshold.cents),
            input.kind.value,
        )
        state = next(
            x
            for x in states
            if (x.alert.currency.strip(), x.alert.threshold_cents, x.alert.kind) == wanted
        )
        return SpendAlertPayload(spend_alert=SpendAlert.from_state(state))
