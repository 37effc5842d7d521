"""Demo price list in minor units (cents), from /work/shared/PRICING.md (Fly.io-like list prices).

Only the demo and benchmark data use these; the product never hard-codes prices. Per-second
rates are monthly prices divided by a 30-day month (2,592,000 s) and rounded to 12 decimal
places, the most a unit price may carry (NUMERIC(24,12), like Stripe's `unit_amount_decimal`).
"""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

SECONDS_PER_MONTH = 30 * 24 * 3600  # 2,592,000: the month a "per month" list price assumes
HOURS_PER_MONTH = 30 * 24
_PLACES = Decimal("1e-12")


def per_second(cents_per_month: int | str) -> Decimal:
    """A monthly price as a per-second unit price in cents, 12 decimals at most."""
    return (Decimal(cents_per_month) / SECONDS_PER_MONTH).quantize(_PLACES, ROUND_HALF_EVEN)


# Machines, billed per second of run time.
SHARED_VCPU_SECOND = per_second(70)  # ~$0.70 per shared vCPU-month
PERFORMANCE_VCPU_SECOND = per_second(2_100)  # ~$21 per dedicated vCPU-month
MEMORY_GB_SECOND = per_second(500)  # ~$5 per GB-month
CPU_SECOND = {"shared": SHARED_VCPU_SECOND, "performance": PERFORMANCE_VCPU_SECOND}

# Storage, per GB-month (volumes are prorated hourly, so quantities are fractional).
ROOTFS_GB_MONTH = Decimal(15)  # stopped machines' root filesystems
VOLUME_GB_MONTH = Decimal(15)
SNAPSHOT_GB_MONTH = Decimal(8)
SNAPSHOT_FREE_GB = 10

# Egress per GB, by region group.
EGRESS_GB = {
    "north-america-europe": Decimal(2),
    "apac-south-america-oceania": Decimal(4),
    "africa-india": Decimal(12),
}
REGION_GROUP = {
    **dict.fromkeys(
        ("ams", "fra", "lhr", "cdg", "iad", "ord", "sjc", "lax", "sea", "yyz"),
        "north-america-europe",
    ),
    **dict.fromkeys(("gru", "nrt", "sin", "syd"), "apac-south-america-oceania"),
    **dict.fromkeys(("jnb", "bom"), "africa-india"),
}
REGIONS = tuple(REGION_GROUP)

# Flat monthly items.
DEDICATED_IPV4_MONTH = Decimal(200)
SSL_CERT_MONTH = Decimal(10)  # per hostname; the first SSL_FREE_HOSTNAMES are free
SSL_WILDCARD_MONTH = Decimal(100)
SSL_FREE_HOSTNAMES = 10
SUPPORT_PLANS = {
    "standard": Decimal(2_900),
    "premium": Decimal(19_900),
    "enterprise": Decimal(250_000),
}
MANAGED_POSTGRES_MONTH = {
    "basic": Decimal(3_800),
    "starter": Decimal(7_200),
    "launch": Decimal(28_200),
    "scale": Decimal(96_200),
    "performance": Decimal(190_000),
}

# Reserved compute blocks: bought yearly, 40% below on-demand, shown as a monthly credit line.
RESERVED_DISCOUNT = Decimal("0.40")
