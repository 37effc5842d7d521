"""The demo's metered products: price versions from demo/prices.py (PRICING.md), and usage
lines turned into the events a metering pipeline would have sent.

Prices have no region dimension, so egress is one product per region group (egress-na-eu,
egress-apac, egress-africa-india), each with its list price.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from sqlmodel import Session

from demo import prices as demo_prices
from models import prices
from models.invoices.lifecycle import LineInput
from models.usage.ingest import UsageEventInput

EGRESS_PRODUCT = {
    "north-america-europe": "egress-na-eu",
    "apac-south-america-oceania": "egress-apac",
    "africa-india": "egress-africa-india",
}

# product -> (unit, unit price in minor units)
METERED: dict[str, tuple[str, Decimal]] = {
    "machines-shared-cpu": ("vCPU-second", demo_prices.SHARED_VCPU_SECOND),
    "machines-performance-cpu": ("vCPU-second", demo_prices.PERFORMANCE_VCPU_SECOND),
    "machines-memory": ("GB-second", demo_prices.MEMORY_GB_SECOND),
    "volume-storage": ("GB-month", demo_prices.VOLUME_GB_MONTH),
    "volume-snapshots": ("GB-month", demo_prices.SNAPSHOT_GB_MONTH),
    "ssl-certificate": ("hostname-month", demo_prices.SSL_CERT_MONTH),
    **{product: ("GB", demo_prices.EGRESS_GB[group]) for group, product in EGRESS_PRODUCT.items()},
}


# product -> (name people read, display unit, stored units per display unit): the price list
# (PRICING.md) states machines per vCPU-month and memory per GB-month, billed per second over a
# 30-day month. Products already priced in a human unit have no display unit.
SECONDS_PER_MONTH = str(demo_prices.SECONDS_PER_MONTH)
DISPLAY: dict[str, tuple[str, str | None, str | None]] = {
    "machines-shared-cpu": ("Shared CPU", "vCPU-month", SECONDS_PER_MONTH),
    "machines-performance-cpu": ("Performance CPU", "vCPU-month", SECONDS_PER_MONTH),
    "machines-memory": ("Memory", "GB-month", SECONDS_PER_MONTH),
    "volume-storage": ("Volume storage", None, None),
    "volume-snapshots": ("Volume snapshots", None, None),
    "ssl-certificate": ("SSL certificates", None, None),
    "egress-na-eu": ("Egress (North America, Europe)", None, None),
    "egress-apac": ("Egress (Asia Pacific, South America, Oceania)", None, None),
    "egress-africa-india": ("Egress (Africa, India)", None, None),
}


def seed_prices(session: Session, *, currencies: set[str], effective_from: datetime) -> int:
    """One list-price version per metered product and currency (the demo bills EUR at the same
    numbers). The first version of a product may start in the past. Caller commits."""
    n = 0
    for currency in sorted(currencies):
        for product, (unit, price) in METERED.items():
            prices.set_price(
                session,
                product=product,
                unit=unit,
                currency=currency,
                unit_price=price,
                effective_from=effective_from,
                now=effective_from,
                display_name=DISPLAY[product][0],
                display_unit=DISPLAY[product][1],
                display_factor=DISPLAY[product][2],
            )
            n += 1
    return n


def product_of(line: LineInput) -> str:
    if line.product == "egress" and line.region:
        return EGRESS_PRODUCT[demo_prices.REGION_GROUP[line.region]]
    return line.product


def events_for(
    slug: str, lines: list[LineInput], *, start: date, now: datetime, per_line: int = 4
) -> Iterator[UsageEventInput]:
    """Each usage line's quantity as `per_line` events spread evenly from `start` to `now`
    (the last part carries the rounding remainder, so the events sum to the line exactly)."""
    begin = datetime(start.year, start.month, start.day, tzinfo=UTC)
    span = max(now - begin, timedelta(seconds=1))
    for line in lines:
        q = Decimal(line.quantity)
        part = (q / per_line).quantize(Decimal("1e-9"))
        for i in range(per_line):
            quantity = part if i < per_line - 1 else q - part * (per_line - 1)
            yield UsageEventInput(
                id=f"seed-{uuid.uuid4().hex}",
                organization_slug=slug,
                product=product_of(line),
                quantity=format(quantity, "f"),  # plain text: the API refuses exponents
                occurred_at=begin + span * (i + 1) / per_line,
                app=line.app,
                region=line.region,
            )
