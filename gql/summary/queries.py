"""The root monthlySummary field: which scope the caller means, then the rollup reader."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gql.core import permissions
from gql.core.context import Info
from gql.core.money import CurrencyFilter
from gql.core.permissions import IsAuthenticated
from gql.summary.resolvers import summary_for
from gql.summary.types import MonthlySummary, Years
from models import rollup


@strawberry.type
class SummaryQueries:
    @strawberry.field(
        description=(
            "Every month of the given years (1 to 10 years, 2000-2100), per currency, zeros "
            "included. Admins: the platform, or one organization with organizationSlug. Members: "
            "their organization."
        ),
        permission_classes=[IsAuthenticated],
    )
    def monthly_summary(
        self,
        info: Info,
        years: Years,
        organization_slug: Annotated[
            str | None,
            strawberry.argument(
                description="Admins: one organization instead of the platform. Members: their own (another reads as none)."
            ),
        ] = None,
        currency: CurrencyFilter = None,
    ) -> list[MonthlySummary]:
        ctx = info.context
        if organization_slug:
            org = permissions.visible_organization(ctx, organization_slug)
            if org is None:  # not visible reads as missing: no months, as `invoices` has no rows
                return summary_for(info, scope_id=None, years=years, currency=currency)
        else:
            org = permissions.default_organization(ctx)
        if org is None:
            return summary_for(info, scope_id=rollup.PLATFORM_SCOPE, years=years, currency=currency)
        return summary_for(
            info,
            scope_id=org.id,
            years=years,
            currency=currency,
            default_currency=org.default_currency,
        )
