"""Custom scalars, registered through StrawberryConfig.scalar_map.

64-bit integers and exact decimals travel as strings: JSON numbers lose precision past 2^53 in
JavaScript, and GraphQL's Int stops at 2^31 - 1.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any, NewType

import strawberry
from strawberry.types.scalar import ScalarDefinition

BigInt = NewType("BigInt", int)
DecimalString = NewType("DecimalString", str)


def _serialize_decimal(value: Decimal | str) -> str:
    # Plain notation without trailing zeros: Decimal("1234.500000000") -> "1234.5", 1E+2 -> "100".
    return format(Decimal(value).normalize(), "f")


def _parse_decimal(value: Any) -> str:
    # Kept as text: the domain parses it and answers a malformed number with a userError that
    # names the field, instead of a top-level GraphQL coercion error.
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise ValueError('Decimal must be a string such as "0.000000268"')
    return str(value)


def _parse_bigint(value: Any) -> int:
    if isinstance(value, bool):
        raise ValueError("BigInt must be an integer")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return int(value)
    raise ValueError("BigInt must be an integer or a string of digits")


SCALARS: dict[object, ScalarDefinition] = {
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
            "Send it as a string: JSON numbers are binary floats and lose digits."
        ),
        serialize=_serialize_decimal,
        parse_value=_parse_decimal,
    ),
}
