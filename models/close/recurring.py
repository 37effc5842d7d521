"""The recurring lines of the close: one SUBSCRIPTION line per subscription overlapping a draft's
period, for the whole period (no proration: a plan started mid-month costs the month), priced
from `prices` at the period start (midnight UTC of the first), so a price change during the
month applies from the next one.

`lines_for` computes them for a set of drafts in two queries (subscriptions, then one price
book). The close (`chunk.close_drafts`) inserts what it returns; the preview of the month so far
(`usage.upcoming`) shows what it returns: one rule, so the preview equals the invoice.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.errors import DomainError, UnknownProduct
from models.invoices import lifecycle
from models.invoices.lifecycle import LineInput
from models.prices import PriceBook, load_book
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


def overlaps(sub: tables.Subscription, period_start: date, period_end: date) -> bool:
    """The subscription bills this period (the predicate of `lines_for`' query)."""
    return sub.since < period_end and (sub.until is None or sub.until > period_start)


def lines_for(
    session: Session, periods: Sequence[Period]
) -> list[list[dict[str, Any]] | DomainError]:
    """For each period (in order): the column values of its recurring lines (as
    `lifecycle.line_values` makes them: amounts computed once, there), or the DomainError that
    bills it (UNKNOWN_PRODUCT: a plan with no price; a bad plan line). Two queries whatever the
    number of periods, none when no organization has a subscription; no locks."""
    if not periods:
        return []
    orgs = sorted({p.organization_id for p in periods})
    s = tables.Subscription
    subs_of: dict[int, list[tables.Subscription]] = defaultdict(list)
    for sub in session.exec(
        select(s)
        .where(
            col(s.organization_id).in_(orgs),
            col(s.since) < max(p.period_end for p in periods),
            sa.or_(col(s.until).is_(None), col(s.until) > min(p.period_start for p in periods)),
        )
        .order_by(col(s.id))
    ):
        subs_of[sub.organization_id].append(sub)
    book = None
    if subs_of:
        book = load_book(
            session,
            products=sorted({x.product for subs in subs_of.values() for x in subs}),
            currencies=sorted({p.currency for p in periods}),
            organization_ids=sorted(subs_of),
            until=midnight(max(p.period_start for p in periods)),
        )
    result: list[list[dict[str, Any]] | DomainError] = []
    for p in periods:
        subs = [x for x in subs_of.get(p.organization_id, []) if overlaps(
            x, p.period_start, p.period_end)]  # fmt: skip
        if not subs:
            result.append([])
            continue
        assert book is not None
        try:
            result.append([lifecycle.line_values(line) for line in plan_lines(subs, book, p)])
        except DomainError as e:
            result.append(e)
    return result


def plan_lines(
    subs: Sequence[tables.Subscription], book: PriceBook, period: Period
) -> list[LineInput]:
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
                description=f"{sub.description} ({period.period_start:%Y-%m})",
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
