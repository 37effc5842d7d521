"""Prices: append-only versions, the newest in effect at a time, organization overrides first."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from models import prices
from models.errors import InvalidValue, NegativePrice, PriceHistoryFixed, TooManyDecimals
from tests.factories import make_org

T0 = datetime(2026, 1, 1, tzinfo=UTC)
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _set(
    db: Session, price: str, at: datetime, *, org: int | None = None, now: datetime = NOW
) -> int:
    row = prices.set_price(
        db,
        product="egress",
        unit="GB",
        currency="usd",
        unit_price=price,
        effective_from=at,
        organization_id=org,
        now=now,
    )
    assert row.id is not None
    return row.id


def test_newest_version_in_effect_wins(db: Session) -> None:
    org = make_org(db)
    assert org.id is not None
    first = _set(db, "2", T0)
    later = NOW + timedelta(hours=1)
    second = _set(db, "3", later)

    def at(t: datetime) -> int | None:
        v = prices.price_at(db, organization_id=org.id or 0, product="egress", currency="USD", at=t)
        return v.id if v else None

    assert at(T0 - timedelta(microseconds=1)) is None
    assert at(T0) == first
    assert at(later - timedelta(microseconds=1)) == first
    assert at(later) == second  # effective_from is inclusive


def test_organization_override_beats_global(db: Session) -> None:
    org, other = make_org(db), make_org(db)
    assert org.id and other.id
    _set(db, "2", T0)
    day2 = T0 + timedelta(days=1)
    override = _set(db, "1.5", day2, org=org.id, now=day2)
    newer_global = _set(db, "2.5", NOW + timedelta(hours=1))
    t = NOW + timedelta(hours=2)
    mine = prices.price_at(db, organization_id=org.id, product="egress", currency="USD", at=t)
    theirs = prices.price_at(db, organization_id=other.id, product="egress", currency="USD", at=t)
    assert mine is not None and mine.id == override and mine.unit_price == Decimal("1.5")
    assert theirs is not None and theirs.id == newer_global


def test_history_cannot_be_rewritten(db: Session) -> None:
    org = make_org(db)
    _set(db, "2", T0)  # the first version may be backdated: nothing was priced before it
    with pytest.raises(PriceHistoryFixed):
        _set(db, "1", NOW - timedelta(seconds=1))
    with pytest.raises(PriceHistoryFixed):  # an override would re-price usage priced globally
        _set(db, "1", T0, org=org.id)
    _set(db, "1", NOW, org=org.id)  # from now on is fine
    price_id = _set(db, "3", NOW)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.begin_nested():
        db.execute(sa.text("UPDATE prices SET unit_price = 9 WHERE id = :id"), {"id": price_id})
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), db.begin_nested():
        db.execute(sa.text("DELETE FROM prices WHERE id = :id"), {"id": price_id})


@pytest.mark.parametrize(
    ("price", "unit", "error"),
    [
        ("-1", "GB", NegativePrice),
        ("0.0000000000001", "GB", TooManyDecimals),
        ("abc", "GB", InvalidValue),
        ("1", "TB", InvalidValue),  # a product keeps its unit across versions
    ],
)
def test_bad_versions_are_refused(
    db: Session, price: str, unit: str, error: type[Exception]
) -> None:
    _set(db, "2", T0)
    with pytest.raises(error):
        prices.set_price(
            db,
            product="egress",
            unit=unit,
            currency="USD",
            unit_price=price,
            effective_from=NOW,
            now=NOW,
        )


def test_list_prices(db: Session) -> None:
    _set(db, "2", T0)
    _set(db, "3", NOW)
    rows = prices.list_prices(db, product="egress", currency="usd")
    assert [r.unit_price for r in rows] == [Decimal(2), Decimal(3)]
