"""Prices as data: append-only versions of a unit price, global or per organization.

The price of a usage event is the newest version in effect at its `occurred_at`, for its product
and its organization's currency; an organization's own version (an override, a negotiated rate)
beats the global one whenever an override is in effect. History is never edited: `set_price`
appends a version from a given time, and the database refuses UPDATE and DELETE on `prices`.
"""

from __future__ import annotations

import bisect
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables, text
from models.errors import InvalidValue, NegativePrice, PriceHistoryFixed
from models.money import UNIT_PRICE_MAX, UNIT_PRICE_PLACES, normalize_currency, parse_decimal
from models.units import DisplayUnit
from models.units import check as check_display

MAX_TEXT = 100


@dataclass(frozen=True)
class PriceVersion:
    id: int
    product: str
    unit: str
    currency: str
    unit_price: Decimal
    effective_from: datetime
    organization_id: int | None
    # How people read it (models/units.py, models/invoices/describe.py); None: the codes.
    display_name: str | None = None
    display: DisplayUnit | None = None

    @classmethod
    def from_row(cls, r: tables.Price) -> PriceVersion:
        assert r.id is not None
        return cls(
            id=r.id,
            product=r.product,
            unit=r.unit,
            currency=r.currency.strip(),
            unit_price=r.unit_price,
            effective_from=r.effective_from,
            organization_id=r.organization_id,
            display_name=r.display_name,
            display=(
                DisplayUnit(r.display_unit, r.display_factor)
                if r.display_unit is not None and r.display_factor is not None
                else None
            ),
        )


def _text(value: str, name: str) -> str:
    checked = text.text(value, name, required=True, limit=MAX_TEXT)
    assert checked is not None
    return checked


def set_price(
    session: Session,
    *,
    product: str,
    unit: str,
    currency: str,
    unit_price: Decimal | str,
    effective_from: datetime,
    organization_id: int | None = None,
    now: datetime,
    display_name: str | None = None,
    display_unit: str | None = None,
    display_factor: Decimal | str | None = None,
) -> tables.Price:
    """Append a price version in effect from `effective_from`. Caller commits.

    A version may start in the past only while no earlier version could have priced usage of
    this product for the organizations it applies to: otherwise events already counted at the old
    price would silently belong to the new one. Raises PriceHistoryFixed, NegativePrice,
    TooManyDecimals, InvalidValue (also when the unit differs from earlier versions').

    The display name, unit and factor (how people read the product and its unit) are kept from
    the product's newest version when not given, so a new price does not lose them.
    """
    product = _text(product, "product")
    unit = _text(unit, "unit")
    code = normalize_currency(currency)
    price = parse_decimal(
        unit_price, field="unitPrice", places=UNIT_PRICE_PLACES, maximum=UNIT_PRICE_MAX
    )
    if price < 0:
        raise NegativePrice("a unit price cannot be negative", field=("unitPrice",))
    if effective_from.tzinfo is None:
        raise InvalidValue("effectiveFrom needs a time zone", field=("effectiveFrom",))
    p = tables.Price
    units = set(
        session.exec(
            select(p.unit).where(col(p.product) == product, col(p.currency) == code).distinct()
        ).all()
    )
    if units and units != {unit}:
        raise InvalidValue(
            f"{product} is priced per {', '.join(sorted(units))}; a new version cannot change the unit",
            field=("unit",),
        )
    if effective_from < now:
        applies: sa.ColumnElement[bool] = col(p.organization_id).is_(None)
        if organization_id is not None:
            applies = sa.or_(applies, col(p.organization_id) == organization_id)
        earlier = session.exec(
            select(sa.func.count())
            .select_from(p)
            .where(col(p.product) == product, col(p.currency) == code, applies)
        ).one()
        if earlier:
            raise PriceHistoryFixed(
                "effectiveFrom is in the past and usage may already have been priced by an "
                "earlier version; start the new version now or later",
                field=("effectiveFrom",),
            )
    display = check_display(display_unit, display_factor)
    name = _text(display_name, "displayName") if display_name is not None else None
    if display is None or name is None:
        newest = session.exec(
            select(p)
            .where(col(p.product) == product, col(p.display_unit).is_not(None))
            .order_by(col(p.id).desc())
            .limit(1)
        ).first()
        newest_named = session.exec(
            select(p)
            .where(col(p.product) == product, col(p.display_name).is_not(None))
            .order_by(col(p.id).desc())
            .limit(1)
        ).first()
        if display is None and newest is not None:
            assert newest.display_unit is not None and newest.display_factor is not None
            display = (newest.display_unit, newest.display_factor)
        if name is None and newest_named is not None:
            name = newest_named.display_name
    row = tables.Price(
        product=product,
        unit=unit,
        currency=code,
        unit_price=price,
        effective_from=effective_from,
        organization_id=organization_id,
        created_at=now,
        display_name=name,
        display_unit=display[0] if display else None,
        display_factor=display[1] if display else None,
    )
    session.add(row)
    session.flush()
    return row


def list_prices(
    session: Session, *, product: str | None = None, currency: str | None = None
) -> list[tables.Price]:
    """Every version, by product, currency, organization (global first), then time."""
    p = tables.Price
    stmt = select(p)
    if product:
        stmt = stmt.where(col(p.product) == product)
    if currency:
        stmt = stmt.where(col(p.currency) == normalize_currency(currency))
    stmt = stmt.order_by(
        col(p.product),
        col(p.currency),
        col(p.organization_id).asc().nulls_first(),
        col(p.effective_from),
    )
    return list(session.exec(stmt).all())


@dataclass
class PriceBook:
    """The versions that may price one batch of events, looked up in memory (bisect per key)."""

    _versions: dict[tuple[str, str, int | None], list[PriceVersion]] = field(
        default_factory=lambda: defaultdict(list)
    )
    _starts: dict[tuple[str, str, int | None], list[datetime]] = field(default_factory=dict)

    def add(self, versions: Iterable[PriceVersion]) -> None:
        for v in versions:
            self._versions[(v.product, v.currency, v.organization_id)].append(v)
        for key, vs in self._versions.items():
            vs.sort(key=lambda v: v.effective_from)
            self._starts[key] = [v.effective_from for v in vs]

    def _at(self, key: tuple[str, str, int | None], at: datetime) -> PriceVersion | None:
        starts = self._starts.get(key)
        if not starts:
            return None
        i = bisect.bisect_right(starts, at)
        return self._versions[key][i - 1] if i else None

    def lookup(
        self, organization_id: int, product: str, currency: str, at: datetime
    ) -> PriceVersion | None:
        """The organization's version in effect at `at`, else the global one, else None."""
        return self._at((product, currency, organization_id), at) or self._at(
            (product, currency, None), at
        )


def load_book(
    session: Session,
    *,
    products: Sequence[str],
    currencies: Sequence[str],
    organization_ids: Sequence[int],
    until: datetime,
) -> PriceBook:
    """The versions that can price events of these products, currencies and organizations up to
    `until`: one query on uq_prices_product_currency_organization_id_effective_from."""
    p = tables.Price
    rows = session.exec(
        select(p).where(
            col(p.product).in_(sorted(set(products))),
            col(p.currency).in_(sorted(set(currencies))),
            sa.or_(
                col(p.organization_id).is_(None),
                col(p.organization_id).in_(sorted(set(organization_ids))),
            ),
            col(p.effective_from) <= until,
        )
    ).all()
    book = PriceBook()
    book.add(PriceVersion.from_row(r) for r in rows)
    return book


def price_at(
    session: Session, *, organization_id: int, product: str, currency: str, at: datetime
) -> PriceVersion | None:
    """One lookup (the newest version in effect at `at`, the organization's first)."""
    book = load_book(
        session,
        products=[product],
        currencies=[normalize_currency(currency)],
        organization_ids=[organization_id],
        until=at,
    )
    return book.lookup(organization_id, product, normalize_currency(currency), at)
