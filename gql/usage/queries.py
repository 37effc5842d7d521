"""Organization.upcomingInvoice: the invoice the close would produce now."""

from __future__ import annotations

from gql.core.context import Info
from gql.core.errors import ClientError, bad_input
from gql.usage.types import UpcomingInvoice
from models.close import cycle
from models.errors import DomainError
from models.usage import upcoming


def upcoming_invoice(info: Info, organization_id: int, period: str | None) -> UpcomingInvoice:
    ctx = info.context
    try:
        start = cycle.parse_period(period) if period is not None else None
    except DomainError as e:
        raise bad_input(e.message) from None
    try:
        found = upcoming.upcoming(ctx.session, organization_id, as_of=ctx.now(), period=start)
    except DomainError as e:
        # PERIOD_CLOSED (read the invoice instead) or UNKNOWN_PRODUCT (a plan with no price:
        # the close would fail this invoice too, so the preview says so rather than guess).
        raise ClientError(e.message, str(e.code)) from None
    return UpcomingInvoice.from_domain(found)
