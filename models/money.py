"""Money arithmetic: integer minor units, exact decimals, one rounding rule.

Rounding rule (one, everywhere): a line's amount is `quantity * unit_price` in minor units,
rounded to a whole minor unit with ROUND_HALF_EVEN (banker's rounding). Half-even is unbiased:
over the thousands of sub-cent usage lines of a busy month, half-up would drift upwards by up to
half a cent per tie, always against the customer. The amount is computed once, when the line is
added, and stored; totals are sums of stored amounts, never re-multiplied.
"""

from __future__ import annotations

import re
from decimal import ROUND_HALF_EVEN, Context, Decimal, InvalidOperation

from models.errors import InvalidValue, TooManyDecimals, UnknownCurrency, ValueOutOfRange

# ISO 4217 codes we accept, with their minor-unit exponent as Stripe uses it.
# Zero-decimal currencies have no minor unit: the amount is in whole units (JPY 500 is 500).
CURRENCY_EXPONENTS: dict[str, int] = {
    **{
        c: 2
        for c in (
            "USD",
            "EUR",
            "GBP",
            "CAD",
            "AUD",
            "NZD",
            "CHF",
            "SEK",
            "NOK",
            "DKK",
            "PLN",
            "CZK",
            "HUF",
            "RON",
            "BGN",
            "BRL",
            "MXN",
            "SGD",
            "HKD",
            "INR",
            "ZAR",
            "ILS",
            "TRY",
            "AED",
            "SAR",
            "THB",
            "MYR",
            "PHP",
            "IDR",
            "TWD",
            "CNY",
            "COP",
            "ARS",
            "PEN",
            "EGP",
            "NGN",
            "KES",
        )
    },
    **{c: 0 for c in ("JPY", "KRW", "VND", "CLP", "ISK", "UGX", "XAF", "XOF", "PYG")},
    **{c: 3 for c in ("BHD", "KWD", "OMR", "JOD", "TND")},
}

CURRENCY_SYMBOLS: dict[str, str] = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "CAD": "CA$",
    "AUD": "A$",
    "INR": "₹",
    "BRL": "R$",
    "KRW": "₩",
    "CNY": "CN¥",
    "MXN": "MX$",
    "NZD": "NZ$",
    "HKD": "HK$",
}

QUANTITY_PLACES = 9  # NUMERIC(20, 9)
QUANTITY_MAX = Decimal("99999999999.999999999")
UNIT_PRICE_PLACES = 12  # NUMERIC(24, 12), like Stripe's unit_amount_decimal
UNIT_PRICE_MAX = Decimal("999999999999.999999999999")
# Largest line amount we accept: far above any real line, far below bigint overflow when summed.
AMOUNT_MAX_CENTS = 10**15


# The one decimal grammar accepted from clients: no exponent, no "_", no spaces, no non-ASCII
# digits (Python's Decimal() reads "1_000", " 1 " and Arabic-Indic digits as numbers).
DECIMAL_TEXT = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)
CURRENCY_TEXT = re.compile(r"[A-Za-z]{3}", re.ASCII)


def normalize_currency(code: str) -> str:
    """Upper-cased ISO 4217 code (exactly three ASCII letters, any case), or UnknownCurrency."""
    upper = code.upper() if CURRENCY_TEXT.fullmatch(code) else ""
    if upper not in CURRENCY_EXPONENTS:
        raise UnknownCurrency(
            f"{code!r} is not a supported ISO 4217 currency code", field=("currency",)
        )
    return upper


def decimal_places(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    return -exponent if isinstance(exponent, int) and exponent < 0 else 0


def parse_decimal(
    raw: Decimal | str | int, *, field: str, places: int, maximum: Decimal
) -> Decimal:
    """An exact decimal with at most `places` decimal places and |value| <= maximum. Text must
    match DECIMAL_TEXT (`-?digits[.digits]`)."""
    if isinstance(raw, str) and not DECIMAL_TEXT.fullmatch(raw):
        raise InvalidValue(
            f"{raw[:40]!r} is not a plain decimal number (digits, an optional '-' and '.')",
            field=(field,),
        )
    try:
        value = raw if isinstance(raw, Decimal) else Decimal(str(raw))
    except InvalidOperation:
        raise InvalidValue(f"{raw!r} is not a decimal number", field=(field,)) from None
    if not value.is_finite():
        raise InvalidValue(f"{field} must be a finite number", field=(field,))
    if decimal_places(value) > places:
        raise TooManyDecimals(
            f"{field} has more than {places} decimal places: {value}", field=(field,)
        )
    if abs(value) > maximum:
        raise ValueOutOfRange(f"{field} must be at most {maximum} in magnitude", field=(field,))
    return value


# Exact for every product of a NUMERIC(20,9) quantity and a NUMERIC(24,12) unit price (at most
# 44 significant digits): the default context's 28 digits would round the product before the
# half-even rounding, and disagree with PostgreSQL's exact numeric (usage_half_even, 0008).
_EXACT = Context(prec=64, rounding=ROUND_HALF_EVEN)


def line_amount_cents(quantity: Decimal, unit_price: Decimal) -> int:
    """quantity x unit price (in minor units), rounded half-even to a whole minor unit."""
    exact = _EXACT.multiply(quantity, unit_price)
    amount = int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN, context=_EXACT))
    if abs(amount) > AMOUNT_MAX_CENTS:
        raise ValueOutOfRange(
            f"line amount {amount} exceeds the per-line limit of {AMOUNT_MAX_CENTS}",
            field=("unitPrice",),
        )
    return amount


def format_money(cents: int, currency: str) -> str:
    """Human format, such as `$1,234.56`, `-€0.05`, `¥500` or `1,234.567 KWD`."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    sign = "-" if cents < 0 else ""
    whole, minor = divmod(abs(cents), 10**exponent)
    number = f"{whole:,}" + (f".{minor:0{exponent}d}" if exponent else "")
    symbol = CURRENCY_SYMBOLS.get(currency)
    return f"{sign}{symbol}{number}" if symbol else f"{sign}{number} {currency}"


def format_unit_price(unit_price: Decimal, currency: str, unit: str) -> str:
    """A unit price (in minor units) for people, in major units: `$0.000000270 / second`,
    `$0.02 / GB`, `$0.025 / GB`. Below one minor unit it keeps three significant digits, so a
    per-second rate reads as a number instead of `0.000027006173¢`."""
    exponent = CURRENCY_EXPONENTS.get(currency, 2)
    major = unit_price.scaleb(-exponent)
    places = max(exponent, decimal_places(major))
    if 0 < abs(unit_price) < 1:
        places = max(exponent, min(places, -major.adjusted() + 2))
    shown = major.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_EVEN)
    symbol = CURRENCY_SYMBOLS.get(currency)
    number = f"{shown:,f}"
    return f"{symbol}{number} / {unit}" if symbol else f"{number} {currency} / {unit}"
