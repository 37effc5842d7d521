"""Money as clients see it: exact minor units (a 64-bit-safe string), the currency, and a
ready-made `formatted` string. Shared by every type that shows an amount."""

from __future__ import annotations

from typing import Annotated

import strawberry

from gql.core.scalars import BigInt
from models.money import format_money


@strawberry.type(description="An amount of money: exact minor units plus the currency.")
class Money:
    cents: BigInt = strawberry.field(
        description="Amount in the currency's minor unit (cents; yen for JPY), as a string."
    )
    currency: str = strawberry.field(description="ISO 4217 code, upper case.")
    formatted: str = strawberry.field(description='Human-readable amount, such as "$1,234.56".')


def money(cents: int, currency: str) -> Money:
    code = currency.strip()
    return Money(cents=BigInt(cents), currency=code, formatted=format_money(cents, code))


# The `currency` argument of the lists that can be narrowed to one (summaries, prices).
CurrencyFilter = Annotated[
    str | None,
    strawberry.argument(description="Only this currency (three letters); all of them when null."),
]
