"""Organization.upcomingInvoice: the month so far."""

from __future__ import annotations

from gql.core.context import Info
from gql.usage.types import UpcomingInvoice
from models.usage import upcoming


def upcoming_invoice(info: Info, organization_id: int) -> UpcomingInvoice | None:
    ctx = info.context
    found = upcoming.upcoming(ctx.session, organization_id, as_of=ctx.now())
    return UpcomingInvoice.from_domain(found) if found else None
