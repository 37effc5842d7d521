"""monthlySummary's reader: the rollup table, O(months), never the invoices. Used by the root
field and by `Organization.monthlySummary`; the caller has already decided the scope."""

from __future__ import annotations

from gql.core.context import Info
from gql.core.errors import bad_input
from gql.core.money import money
from gql.summary.types import MonthlySummary
from models import rollup
from models.errors import DomainError
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
    scope_id: int | None,
    years: list[int],
    currency: str | None,
    default_currency: str = "USD",
) -> list[MonthlySummary]:
    """Every month of `years` for one rollup scope (an organization id, or the platform).
    `scope_id=None` is an organization the caller cannot see: the arguments are still checked,
    so a bad year is the same error either way, and there are no months."""
    wanted = _check_years(years)
    try:
        code = normalize_currency(currency) if currency else None
    except DomainError as e:
        raise bad_input(e.message) from None
    if scope_id is None:
        return []
    rows = rollup.monthly_summary(
        info.context.session,
        scope_id=scope_id,
        years=wanted,
        currency=code,
        default_currency=default_currency.strip(),
        today=info.context.now().date(),
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
            complete=r.complete,
            credited=money(r.credited_cents, r.currency),
            net=money(r.net_cents, r.currency),
        )
        for r in rows
    ]
