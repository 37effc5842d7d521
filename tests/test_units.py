"""Human units (models/units.py, prices.display_*) and the descriptions of lines
(models/invoices/describe.py): exact decimals both ways, the round trip, setPrice keeping a
product's display unit, and LineItem's display fields and description over HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from demo import prices as demo_prices
from models import prices
from models.errors import InvalidValue
from models.invoices import describe
from models.units import QUANTITY_PLACES, DisplayUnit, to_display
from models.usage import ingest
from tests.api_helpers import Api
from tests.factories import make_org, make_token
from tests.test_close import IN_FEB, PRICES_FROM, ev

MONTH = Decimal(2_592_000)
GB_MONTH = DisplayUnit("GB-month", MONTH)
VCPU_MONTH = DisplayUnit("vCPU-month", MONTH)


def test_a_month_of_gb_seconds_reads_as_gb_months_at_the_list_price() -> None:
    shown = to_display(Decimal("6842880"), demo_prices.MEMORY_GB_SECOND, "GB-second", GB_MONTH)
    assert (shown.quantity, shown.unit, shown.unit_price) == (
        Decimal("2.64"),
        "GB-month",
        Decimal("500"),
    )
    assert str(shown.quantity) == "2.64" and str(shown.unit_price) == "500"
    cpu = to_display(Decimal("2592000"), demo_prices.SHARED_VCPU_SECOND, "vCPU-second", VCPU_MONTH)
    assert (str(cpu.quantity), str(cpu.unit_price)) == ("1", "70")
    perf = to_display(Decimal(1), demo_prices.PERFORMANCE_VCPU_SECOND, "vCPU-second", VCPU_MONTH)
    assert str(perf.unit_price) == "2100"
    # Without a display unit: the stored values, exact, without trailing zeros.
    plain = to_display(Decimal("12.500000000"), Decimal("2.000000000000"), "GB", None)
    assert (str(plain.quantity), plain.unit, str(plain.unit_price)) == ("12.5", "GB", "2")


@given(st.integers(min_value=0, max_value=10**14))
def test_display_quantity_times_factor_is_the_quantity_within_the_written_rule(
    nanos: int,
) -> None:
    quantity = Decimal(nanos).scaleb(-9)  # NUMERIC(20, 9)
    shown = to_display(quantity, Decimal("0.000192901235"), "GB-second", GB_MONTH).quantity
    assert isinstance(shown, Decimal)
    back = shown * MONTH
    # The rule (models/units.py): half-even to 6 places, so within factor / 2 * 10^-6 ...
    assert abs(back - quantity) <= MONTH / 2 * Decimal(10) ** -QUANTITY_PLACES
    # ... and exact whenever the quantity is a multiple of factor / 10^6.
    step = MONTH * Decimal(10) ** -QUANTITY_PLACES
    exact = (quantity // step) * step
    assert to_display(exact, Decimal(1), "GB-second", GB_MONTH).quantity * MONTH == exact


def test_descriptions_read_as_a_person_writes_them() -> None:
    assert describe.usage_line("Shared CPU", "acme-api", "iad") == "Shared CPU, acme-api in iad"
    assert describe.usage_line("Egress (North America, Europe)", None, "iad") == (
        "Egress (North America, Europe) in iad"
    )
    assert describe.usage_line("Memory", "web", None) == "Memory, web"
    assert (
        describe.usage_line(
            "Shared CPU", "web", "ams", period=date(2026, 1, 1), invoice_period=date(2026, 2, 1)
        )
        == "Shared CPU, web in ams (late usage of 2026-01)"
    )
    assert describe.recurring_line("Standard support", date(2026, 11, 1)) == (
        "Standard support, November 2026"
    )


def test_set_price_keeps_the_display_unit_and_checks_it(db: Session) -> None:
    now = datetime(2026, 2, 1, tzinfo=UTC)
    first = prices.set_price(
        db, product="machines-memory", unit="GB-second", currency="USD",
        unit_price=demo_prices.MEMORY_GB_SECOND, effective_from=now, now=now,
        display_name="Memory", display_unit="GB-month", display_factor="2592000",
    )  # fmt: skip
    assert (first.display_name, first.display_unit, first.display_factor) == (
        "Memory", "GB-month", MONTH,
    )  # fmt: skip
    later = prices.set_price(
        db, product="machines-memory", unit="GB-second", currency="USD", unit_price="0.0002",
        effective_from=datetime(2026, 3, 1, tzinfo=UTC), now=now,
    )  # fmt: skip
    assert (later.display_name, later.display_unit, later.display_factor) == (
        "Memory", "GB-month", MONTH,
    )  # fmt: skip
    for unit, factor, field in (
        ("GB-month", None, "displayUnit"),
        (None, "3600", "displayUnit"),
        ("GB-month", "0", "displayFactor"),
        ("GB-month", "-1", "displayFactor"),
        ("GB-month", "1.0000000000001", "displayFactor"),
    ):
        with pytest.raises(Exception) as e:
            prices.set_price(
                db, product="machines-memory", unit="GB-second", currency="USD",
                unit_price="0.0002", effective_from=datetime(2026, 4, 1, tzinfo=UTC), now=now,
                display_unit=unit, display_factor=factor,
            )  # fmt: skip
        assert getattr(e.value, "field", None) == (field,), (unit, factor, e.value)
    assert isinstance(InvalidValue("x"), Exception)


LINES = """query($id: ID!) { invoice(id: $id) { lineItems(first: 10) { nodes {
  description unit quantity unitPrice displayQuantity displayUnit displayUnitPrice
  amount { cents } } } } }"""


def test_line_items_answer_display_values_beside_the_exact_ones(
    api: Api, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        make_org(s, slug="acme")
        prices.set_price(
            s, product="machines-shared-cpu", unit="vCPU-second", currency="USD",
            unit_price=demo_prices.SHARED_VCPU_SECOND, effective_from=PRICES_FROM,
            now=PRICES_FROM, display_name="Shared CPU", display_unit="vCPU-month",
            display_factor="2592000",
        )  # fmt: skip
        admin = make_token(s, None, admin=True)
        result = ingest.record_usage(s, [ev("a", "acme", quantity="1296000")], now=IN_FEB)
        assert result.rejected == []
    invoices = api.data("{ invoices(first: 1) { nodes { id } } }", admin)["invoices"]["nodes"]
    data = api.data(LINES, admin, id=invoices[0]["id"])
    (line,) = data["invoice"]["lineItems"]["nodes"]
    assert line["description"] == "Shared CPU, web in ams"
    assert (line["unit"], line["quantity"], line["unitPrice"]) == (
        "vCPU-second", "1296000", "0.000027006173",
    )  # fmt: skip
    assert (line["displayQuantity"], line["displayUnit"], line["displayUnitPrice"]) == (
        "0.5", "vCPU-month", "70",
    )  # fmt: skip
    assert line["amount"]["cents"] == "35"
