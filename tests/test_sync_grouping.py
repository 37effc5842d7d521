"""Grouping over Stripe's 250-item cap: a pure function, so plain unit tests and a property."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from models.tables import InvoiceItem
from sync.grouping import GROUP_KEY, LINE_KEY, STRIPE_MAX_LINES, remote_lines

PERIOD = (date(2026, 2, 1), date(2026, 3, 1))


def item(
    n: int,
    *,
    product: str = "egress",
    region: str | None = "ams",
    amount: int = 100,
    kind: str = "usage",
    period: tuple[date, date] | None = None,
) -> InvoiceItem:
    return InvoiceItem(
        id=n,
        public_id=f"li_{n:06d}",
        invoice_id=1,
        kind=kind,
        description=f"{product} in {region}",
        product=product,
        region=region,
        unit="GB",
        quantity=Decimal(1),
        unit_price=Decimal(amount),
        amount_cents=amount,
        period_start=period[0] if period else None,
        period_end=period[1] if period else None,
    )


def test_up_to_the_cap_every_item_is_its_own_line_with_its_exact_amount() -> None:
    items = [item(n, amount=n * 7 - 3) for n in range(1, STRIPE_MAX_LINES + 1)]
    lines = remote_lines(items, period=PERIOD)
    assert len(lines) == STRIPE_MAX_LINES
    assert all(line.key_field == LINE_KEY and not line.grouped for line in lines)
    assert [line.key for line in lines] == [i.public_id for i in items]
    assert [line.amount for line in lines] == [i.amount_cents for i in items]
    # A line without a period of its own carries the invoice's.
    assert (lines[0].period_start, lines[0].period_end) == PERIOD


def test_past_the_cap_lines_are_grouped_by_product_and_region_with_exact_sums() -> None:
    regions = ["ams", "iad", "sin"]
    products = ["egress", "machines-shared-cpu"]
    items = [
        item(n, product=products[n % 2], region=regions[n % 3], amount=n % 11 - 2)
        for n in range(412)
    ]
    lines = remote_lines(items, period=PERIOD)
    assert len(lines) == 6 and all(line.key_field == GROUP_KEY for line in lines)
    assert sum(line.amount for line in lines) == sum(i.amount_cents for i in items)
    assert sum(line.item_count for line in lines) == 412
    egress_ams = next(line for line in lines if line.key == "egress|ams")
    members = [i for i in items if i.product == "egress" and i.region == "ams"]
    assert egress_ams.amount == sum(i.amount_cents for i in members)
    assert egress_ams.description == f"Egress, ams, {len(members)} lines"
    assert egress_ams.metadata == {"group": "egress|ams"}
    cpu = next(line for line in lines if line.key.startswith("machines-shared-cpu|"))
    assert cpu.description.startswith("Machines shared cpu, ")


def test_grouping_falls_back_to_product_then_kind_to_stay_under_the_cap() -> None:
    # 300 regions of one product: product+region gives 300 groups, over the cap.
    by_region = [item(n, region=f"r{n}") for n in range(300)]
    lines = remote_lines(by_region, period=PERIOD)
    assert [line.key for line in lines] == ["egress"]
    assert lines[0].description == "Egress, 300 lines" and lines[0].amount == 300 * 100
    # 300 products: product alone is over the cap too, so by kind.
    mixed = [item(n, product=f"p{n}", kind="usage" if n % 3 else "credit") for n in range(300)]
    lines = remote_lines(mixed, period=PERIOD)
    assert {line.key for line in lines} == {"usage charges", "credit charges"}
    assert sum(line.amount for line in lines) == 300 * 100


def test_groups_are_deterministic_whatever_the_order_the_items_come_in() -> None:
    items = [item(n, product=["a", "b"][n % 2], region=["x", "y", "z"][n % 3]) for n in range(500)]
    shuffled = items[:]
    random.Random(3).shuffle(shuffled)
    assert remote_lines(items, period=PERIOD) == remote_lines(shuffled, period=PERIOD)


def test_a_group_spans_its_items_periods_or_the_invoices() -> None:
    items = [item(n, period=(date(2026, 2, 3), date(2026, 2, 10))) for n in range(200)]
    items += [item(200 + n) for n in range(60)]  # no period of their own: the invoice's
    (line,) = remote_lines(items, period=PERIOD)
    assert (line.period_start, line.period_end) == PERIOD
    only_own = [item(n, period=(date(2026, 2, 3), date(2026, 2, 10))) for n in range(260)]
    (line,) = remote_lines(only_own, period=PERIOD)
    assert (line.period_start, line.period_end) == (date(2026, 2, 3), date(2026, 2, 10))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from(["egress", "ipv4", "machines-shared-cpu", "volume-storage"]),
            st.sampled_from(["ams", "fra", None]),
            st.integers(min_value=-(10**9), max_value=10**12),
        ),
        min_size=1,
        max_size=700,
    )
)
def test_the_total_matches_to_the_cent_and_the_cap_holds(
    rows: list[tuple[str, str | None, int]],
) -> None:
    items = [item(n, product=p, region=r, amount=a) for n, (p, r, a) in enumerate(rows)]
    lines = remote_lines(items, period=PERIOD)
    assert sum(line.amount for line in lines) == sum(a for _, _, a in rows)
    assert len(lines) <= STRIPE_MAX_LINES
    assert len({line.key for line in lines}) == len(lines)  # keys identify lines on Stripe
    assert sum(line.item_count for line in lines) == len(rows)
