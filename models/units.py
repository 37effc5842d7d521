"""Human units: how people read a quantity and its unit price.

A price version may carry a display unit and a factor, the number of stored units in one
display unit: a price per GB-second is read per GB-month with factor 2,592,000 (a 30-day month,
as the price list's monthly figures assume); vCPU-second per vCPU-month likewise. Lines keep
their exact stored quantity, unit price and amount; the display values are derived, exact
decimals (never floats), rounded by one written rule:

- displayQuantity = quantity / factor, rounded half-even to 6 decimal places (QUANTITY_PLACES);
- displayUnitPrice = unitPrice * factor, rounded half-even to 4 decimal places of a cent (a
  millionth of a dollar; PRICE_PLACES): a per-second price stored to 12 places is a rounded
  monthly price already (0.000027006173 ¢/s * 2,592,000 = 70.000000416 ¢; memory's
  0.000192901235 ¢/s gives 500.00000112 ¢), and the stored rounding moves the product by at most
  0.5e-12 * factor (1.3e-6 ¢ for a month of seconds), so 4 places show the 70 ¢ and 500 ¢ the
  prices came from;
- trailing zeros are dropped ("2.64", not "2.640000").

Round trip: displayQuantity * factor equals quantity exactly whenever quantity is a multiple of
factor / 10^6 (for GB-seconds: of 2.592 GB-seconds), and is within factor / 2 * 10^-6 of it
otherwise. The amount is never recomputed from display values: it is the stored amount.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

from models.errors import InvalidValue
from models.money import parse_decimal

QUANTITY_PLACES = 6
PRICE_PLACES = 4
FACTOR_PLACES = 12
FACTOR_MAX = Decimal("1e12")
MAX_UNIT = 40


@dataclass(frozen=True)
class DisplayUnit:
    unit: str
    factor: Decimal


@dataclass(frozen=True)
class Display:
    quantity: Decimal
    unit: str
    unit_price: Decimal


def _plain(value: Decimal) -> Decimal:
    """No trailing zeros and no exponent: 2.640000 -> 2.64, 70.000000 -> 70."""
    normal = value.normalize()
    return normal.quantize(Decimal(1)) if normal == normal.to_integral() else normal


def to_display(
    quantity: Decimal, unit_price: Decimal, unit: str, display: DisplayUnit | None
) -> Display:
    """A line's quantity and unit price in its display unit (the stored ones without one)."""
    if display is None:
        return Display(_plain(quantity), unit, _plain(unit_price))
    q = (quantity / display.factor).quantize(Decimal(10) ** -QUANTITY_PLACES, ROUND_HALF_EVEN)
    p = (unit_price * display.factor).quantize(Decimal(10) ** -PRICE_PLACES, ROUND_HALF_EVEN)
    return Display(_plain(q), display.unit, _plain(p))


def check(unit: str | None, factor: Decimal | str | None) -> tuple[str, Decimal] | None:
    """A display unit and factor as given to setPrice: both or neither; the factor positive, at
    most 12 decimal places. Raises InvalidValue (field displayUnit or displayFactor)."""
    if unit is None and factor is None:
        return None
    if unit is None or factor is None:
        raise InvalidValue("displayUnit and displayFactor go together", field=("displayUnit",))
    text = unit.strip()
    if not text or len(text) > MAX_UNIT or "\x00" in text:
        raise InvalidValue(f"displayUnit must be 1-{MAX_UNIT} characters", field=("displayUnit",))
    value = parse_decimal(factor, field="displayFactor", places=FACTOR_PLACES, maximum=FACTOR_MAX)
    if value <= 0:
        raise InvalidValue("displayFactor must be more than zero", field=("displayFactor",))
    return text, value
