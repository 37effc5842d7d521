"""The recurring lines of the close: one SUBSCRIPTION line per subscription overlapping a draft's
period, for the whole period (no proration: a plan started mid-month costs the month), priced
from `prices` at the period start (midnight UTC of the first), so a price change during the
month applies from the next one.

`lines_for` computes them for a set of drafts in one query (subscriptions with their candidate
price versions). The close (`chunk.close_drafts`) inserts what it returns; the preview of the month so far
(`usage.upcoming`) shows what it returns: one rule, so the preview equals the invoice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from decimal import Decimal
from typing import Any, NamedTuple

import sqlalchemy as sa
from sqlmodel import Session

from models.errors import DomainError, UnknownProduct
from models.invoices import describe, lifecycle
from models.invoices.lifecycle import LineInput
from models.prices import PriceBook, PriceVersion
from models.tables import LineItemKind


@dataclass(frozen=True)
class Period:
    """What the recurring lines depend on: whose, in which currency, for which period."""

    organization_id: int
    currency: str
    period_start: date
    period_end: date


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=UTC)


def overlaps(sub: Sub, period_start: date, period_end: date) -> bool:
    """The subscription bills this period (the predicate of `lines_for`' query)."""
    return sub.since < period_end and (sub.until is None or sub.until > period_start)


class Sub(NamedTuple):
    """A subscription row, as the recurring lines need it."""

    id: int
    organization_id: int
    product: str
    description: str
    quantity: Decimal
    since: date
    until: date | None


# The subscriptions overlapping the periods' span, each with every price version that could
# price it at a period start (its organization's or the list's, in the periods' currencies):
# one round trip for both, on ix_subscriptions_organization_id and
# uq_prices_product_currency_organization_id_effective_from. Which version applies is decided in
# Python by `PriceBook.lookup`, the one price lookup rule.
_SUBS_AND_PRICES = sa.text(
    "SELECT s.id, s.organization_id, s.product, s.description, s.quantity, s.since, s.until, "
    "p.id AS p_id, p.unit, p.currency, p.unit_price, p.effective_from, "
    "p.organization_id AS p_org FROM subscriptions s "
    "LEFT JOIN prices p ON p.product = s.product AND p.currency = ANY(CAST(:currencies AS text[])) "
    "AND (p.organization_id IS NULL OR p.organization_id = s.organization_id) "
    "AND p.effective_from <= :until "
    "WHERE s.organization_id = ANY(CAST(:orgs AS bigint[])) AND s.since < :end "
    "AND (s.until IS NULL OR s.until > :start) ORDER BY s.id"
)


def lines_for(
    session: Session, periods: Sequence[Period]
) -> list[list[dict[str, Any]] | DomainError]:
    """For each period (in order): the column values of its recurring lines (as
    `lifecycle.line_values` makes them: amounts computed once, there), or the DomainError that
    bills it (UNKNOWN_PRODUCT: a plan with no price; a bad plan line). One query whatever the
    number of periods; no locks."""
    if not periods:
        return []
    rows = session.execute(
        _SUBS_AND_PRICES,
        {
            "orgs": sorted({p.organization_id for p in periods}),
            "currencies": sorted({p.currency for p in periods}),
            "until": midnight(max(p.period_start for p in periods)),
            "start": min(p.period_start for p in periods),
            "end": max(p.period_end for p in periods),
        },
    ).all()
    subs_of: dict[int, dict[int, Sub]] = defaultdict(dict)
    versions: dict[int, PriceVersion] = {}
    for r in rows:
        subs_of[r.organization_id][r.id] = Sub(
            r.id, r.organization_id, r.product, r.description, r.quantity, r.since, r.until
        )
        if r.p_id is not None:
            versions[r.p_id] = PriceVersion(
                r.p_id, r.product, r.unit, r.currency.strip(), r.unit_price, r.effective_from,
                r.p_org,
            )  # fmt: skip
    book = PriceBook()
    book.add(versions.values())
    result: list[list[dict[str, Any]] | DomainError] = []
    for p in periods:
        subs = [x for x in subs_of.get(p.organization_id, {}).values() if overlaps(
            x, p.period_start, p.period_end)]  # fmt: skip
        try:
            result.append([lifecycle.line_values(line) for line in plan_lines(subs, book, p)])
        except DomainError as e:
            result.append(e)
    return result


def plan_lines(subs: Sequence[Sub], book: PriceBook, period: Period) -> list[LineInput]:
    """The lines of these subscriptions (already known to overlap the period, in id order),
    priced from `book` at the period start. Raises UnknownProduct (a plan with no price)."""
    at = midnight(period.period_start)
    lines: list[LineInput] = []
    for sub in subs:
        price = book.lookup(period.organization_id, sub.product, period.currency, at)
        if price is None:
            raise UnknownProduct(
                f"no {period.currency} price for {sub.product!r} at {at:%Y-%m-%d}: the plan of "
                f"subscription {sub.id} cannot be billed",
                field=("subscriptions", str(sub.id)),
            )
        lines.append(
            LineInput(
                kind=LineItemKind.SUBSCRIPTION,
                description=describe.recurring_line(sub.description, period.period_start),
                product=sub.product,
                unit=price.unit,
                quantity=sub.quantity,
                unit_price=price.unit_price,
                period_start=period.period_start,
                period_end=period.period_end,
                metadata={"subscription_id": sub.id, "price_id": price.id},
            )
        )
    return lines
