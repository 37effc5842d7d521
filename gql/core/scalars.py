"""Custom scalars, registered through StrawberryConfig.scalar_map.

64-bit integers and exact decimals travel as strings: JSON numbers lose precision past 2^53 in
JavaScript, and GraphQL's Int stops at 2^31 - 1.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any, NewType

import strawberry
from graphql import GraphQLError
from strawberry.types.scalar import ScalarDefinition

BigInt = NewType("BigInt", int)
DecimalString = NewType("DecimalString", str)


def _serialize_decimal(value: Decimal | str) -> str:
    # Plain notation without trailing zeros: Decimal("1234.500000000") -> "1234.5", 1E+2 -> "100".
    return format(Decimal(value).normalize(), "f")


def _parse_decimal(value: Any) -> str:
    # Only strings: a JSON number arrives as a binary float, so 12345678901.123456789 would
    # already be 12345678901.123457 here. Kept as text: the domain checks the grammar
    # (models.money.DECIMAL_TEXT) and answers a userError that names the field.
    if not isinstance(value, str):
        raise GraphQLError('Decimal must be a string such as "0.000000268", never a JSON number')
    return value


DATE_MIN, DATE_MAX = date(2000, 1, 1), date(2100, 12, 31)


def _parse_date(value: Any) -> date:
    # GraphQLError, not ValueError: graphql-core keeps a ValueError as the original error, and
    # MaskInternalErrors would then hide a client's mistake as INTERNAL_ERROR.
    try:
        if not isinstance(value, str) or len(value) != 10:
            raise ValueError("not YYYY-MM-DD")
        parsed = date.fromisoformat(value)
    except ValueError:
        raise GraphQLError(f'Date must be a string "YYYY-MM-DD", got {str(value)[:20]!r}') from None
    if not DATE_MIN <= parsed <= DATE_MAX:
        raise GraphQLError(f"Date must be within {DATE_MIN} and {DATE_MAX}, got {parsed}")
    return parsed


def _parse_bigint(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("BigInt must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise ValueError("BigInt must be an integer or a string of digits")


SCALARS: dict[object, ScalarDefinition] = {
    date: strawberry.scalar(
        name="Date",
        description="A calendar day, ISO 8601 (YYYY-MM-DD), within 2000-01-01 and 2100-12-31.",
        serialize=date.isoformat,
        parse_value=_parse_date,
    ),
    BigInt: strawberry.scalar(
        name="BigInt",
        description="A 64-bit integer, serialised as a string (amounts of money in minor units).",
        serialize=str,
        parse_value=_parse_bigint,
    ),
    DecimalString: strawberry.scalar(
        name="Decimal",
        description=(
            'An exact decimal number, serialised as a string ("1234.5", "0.000000268"). '
            "Send it as a string matching -?digits[.digits]: JSON numbers are binary floats "
            'and lose digits, so they are refused, and so are "1_000", " 1 " and non-ASCII digits.'
        ),
        serialize=_serialize_decimal,
        parse_value=_parse_decimal,
    ),
}
