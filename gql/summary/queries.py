"""monthlySummary: read from the rollup table, O(months), never from the invoices."""

from __future__ import annotations

import strawberry

from gql.core.context import Info
from gql.core.errors import bad_input
from gql.invoices.types import money
from gql.summary.types import MonthlySummary
from models import rollup
from models.errors import DomainError, NotFound
from models.money import normalize_currency

MAX_YEARS = 10
FIRST_YEAR, LAST_YEAR = 2000, 2100


def _check_years(years: list[int]) -> list[int]:
    if not years:
        raise bad_input("years must name at least one year")
    distinct = sorted(set(years))
    if len(distinct) > MAX_YEARS:
        raise bad_input(f"at most {MAX_YEARS} years at a time, got {len(distinct)}")
    for y in distinct:
        if not FIRST_YEAR <= y <= LAST_YEAR:
            raise bad_input(f"year {y} is outside {FIRST_YEAR}-{LAST_YEAR}")
    return distinct


def summary_for(
    info: Info,
    *,
    scope_id: int,
    years: list[int],
    currency: str | None,
    default_currency: str = "USD",
) -> list[MonthlySummary]:
    wanted = _check_years(years)
    try:
        code = normalize_currency(currency) if currency else None
    except DomainError as e:
        raise bad_input(e.message) from None
    rows = rollup.monthly_summary(
        info.context.session,
        scope_id=scope_id,
        years=wanted,
        currency=code,
        default_currency=default_currency.strip(),
    )
    return [
        MonthlySummary(
            month=r.label,
            year=r.year,
            month_of_year=r.month,
            currency=r.currency,
            invoice_count=r.invoice_count,
            subtotal=money(r.subtotal_cents, r.currency),
            total=money(r.total_cents, r.currency),
        )
        for r in rows
    ]


@strawberry.type
class SummaryQueries:
    @strawberry.field(
        description=(
            "Every month of the given years (1 to 10 years, 2000-2100), per currency, zeros "
            "included. Admins: the platform, or one organization with organizationSlug. Members: "
            "their organization."
        )
    )
    def monthly_summary(
        self,
        info: Info,
        years: list[int],
        organization_slug: str | None = None,
        currency: str | None = None,
    ) -> list[MonthlySummary]:
        ctx = info.context
        viewer = ctx.viewer
        if organization_slug:
            try:
                org = ctx.organization_for_viewer(organization_slug)
            except NotFound:
                raise bad_input(f"no organization {organization_slug!r}") from None
            assert org.id is not None
            return summary_for(
                info,
                scope_id=org.id,
                years=years,
                currency=currency,
                default_currency=org.default_currency,
            )
        if viewer.is_admin:
            return summary_for(info, scope_id=rollup.PLATFORM_SCOPE, years=years, currency=currency)
        assert viewer.organization_id is not None
        from models import tables

        org_row = ctx.session.get_one(tables.Organization, viewer.organization_id)
        return summary_for(
            info,
            scope_id=viewer.organization_id,
            years=years,
            currency=currency,
            default_currency=org_row.default_currency,
        )
