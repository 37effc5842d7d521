"""models/money.py: one rounding rule, exact decimals, sums of stored amounts."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import Session

from models.errors import TooManyDecimals, UnknownCurrency, ValueOutOfRange
from models.invoices import lifecycle
from models.money import format_money, line_amount_cents, normalize_currency, parse_decimal
from tests.factories import NOW, make_org, usage_line


@pytest.mark.parametrize(
    ("quantity", "price", "cents"),
    [
        ("1", "0.5", 0),  # half-even: a tie rounds to the even neighbour
        ("1", "1.5", 2),
        ("1", "2.5", 2),
        ("3", "0.5", 2),  # 1.5 -> 2
        ("1234.5", "0.0000268", 0),  # 0.033 cents
        ("37.25", "2", 74),  # 74.5 -> 74 (even)
        ("1", "-2.5", -2),  # credits round the same way, symmetric around zero
        ("0", "99", 0),
    ],
)
def test_line_amount_rounds_half_even(quantity: str, price: str, cents: int) -> None:
    assert line_amount_cents(Decimal(quantity), Decimal(price)) == cents


def test_parse_decimal_refuses_too_many_places_and_huge_values() -> None:
    with pytest.raises(TooManyDecimals):
        parse_decimal("0.0000000000001", field="unitPrice", places=12, maximum=Decimal(10))
    with pytest.raises(ValueOutOfRange):
        parse_decimal("11", field="unitPrice", places=12, maximum=Decimal(10))
    assert parse_decimal("1.500000000000", field="q", places=9, maximum=Decimal(10)) == Decimal(
        "1.5"
    )


def test_currency_codes_are_normalised_and_checked() -> None:
    assert normalize_currency("usd") == "USD"
    with pytest.raises(UnknownCurrency):
        normalize_currency("usx")


@pytest.mark.parametrize(
    ("cents", "currency", "text"),
    [
        (123456, "USD", "$1,234.56"),
        (-5, "EUR", "-€0.05"),
        (500, "JPY", "¥500"),
        (1234567, "KWD", "1,234.567 KWD"),
        (2**31 + 5, "USD", "$21,474,836.53"),
        (0, "CHF", "0.00 CHF"),
    ],
)
def test_format_money(cents: int, currency: str, text: str) -> None:
    assert format_money(cents, currency) == text


quantities = st.decimals(
    min_value=0, max_value=10**6, places=9, allow_nan=False, allow_infinity=False
)
prices = st.decimals(min_value=0, max_value=10**3, places=12, allow_nan=False, allow_infinity=False)


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(st.lists(st.tuples(quantities, prices), min_size=1, max_size=20))
def test_subtotal_is_the_sum_of_stored_line_amounts(
    db: Session, lines: list[tuple[Decimal, Decimal]]
) -> None:
    with db.begin_nested():
        org = make_org(db)
        inv = lifecycle.create_draft(
            db,
            org,
            currency="USD",
            period_start=NOW.date().replace(day=1),
            period_end=NOW.date().replace(day=28),
            now=NOW,
        )
        items = lifecycle.add_lines(
            db, inv, [usage_line(quantity=str(q), unit_price=str(p)) for q, p in lines], now=NOW
        )
        inv = lifecycle.finalize(db, inv, now=NOW, rollup_shards=4)
        assert inv.subtotal_cents == sum(i.amount_cents for i in items)
        assert inv.total_cents == inv.subtotal_cents
        assert [i.amount_cents for i in items] == [line_amount_cents(q, p) for q, p in lines]
        db.rollback()
