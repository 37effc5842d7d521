"""How a line reads: the one rule for the descriptions of usage and recurring lines.

Usage lines: "Shared CPU, acme-api in iad" (product name, app, region), "Egress in iad",
"Memory, acme-api", "Shared CPU"; late usage adds "(late usage of 2026-01)". The product name is
the price's display name (prices.display_name), else the product code. Recurring lines:
"Standard support, November 2026". One-off lines keep the words a person gave them.

Called by the ingest for every new usage line (models/usage/staging.py) and by the close for
every recurring line (models/close/cycle.py): plain string work, no lookups, so it stays cheap
on the ingest's hot path.
"""

from __future__ import annotations

from datetime import date


def usage_line(
    product_name: str,
    app: str | None,
    region: str | None,
    *,
    period: date | None = None,
    invoice_period: date | None = None,
) -> str:
    """A usage line's description; `period` differing from `invoice_period` marks late usage."""
    text = product_name
    if app:
        text += f", {app}"
    if region:
        text += f" in {region}"
    if period is not None and invoice_period is not None and period != invoice_period:
        text += f" (late usage of {period:%Y-%m})"
    return text


def recurring_line(description: str, period_start: date) -> str:
    """A subscription's line for one period: its description and the month, in words."""
    return f"{description}, {period_start:%B %Y}"
