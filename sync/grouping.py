"""What we send to Stripe for an invoice: one remote line per line item, or grouped lines.

Stripe caps an invoice at 250 invoice items, and a busy month has thousands of usage lines. Past
the cap, lines are grouped deterministically (by product and region, then by product alone if
that is still too many), each group carrying the exact sum of its lines, so Stripe's total is
ours to the cent and a retry sends exactly the same groups. The detail stays in our API.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from models import tables

STRIPE_MAX_LINES = 250


@dataclass(frozen=True)
class RemoteLine:
    key: str  # metadata value that identifies the line on Stripe
    key_field: str  # "line_item_id" or "group"
    amount: int
    description: str
    period_start: date
    period_end: date

    @property
    def metadata(self) -> dict[str, str]:
        return {self.key_field: self.key}


def _period(inv: tables.Invoice, items: Sequence[tables.InvoiceItem]) -> tuple[date, date]:
    starts = [i.period_start for i in items if i.period_start]
    ends = [i.period_end for i in items if i.period_end]
    return (min(starts) if starts else inv.period_start, max(ends) if ends else inv.period_end)


def _label(product: str) -> str:
    return product.replace("-", " ").capitalize()


def remote_lines(
    invoice: tables.Invoice, items: Sequence[tables.InvoiceItem], *, cap: int = STRIPE_MAX_LINES
) -> list[RemoteLine]:
    """The lines Stripe should hold, in a stable order."""
    ordered = sorted(items, key=lambda i: i.id or 0)
    if len(ordered) <= cap:
        return [
            RemoteLine(
                key=i.public_id,
                key_field="line_item_id",
                amount=i.amount_cents,
                description=i.description[:500],
                period_start=i.period_start or invoice.period_start,
                period_end=i.period_end or invoice.period_end,
            )
            for i in ordered
        ]
    keys: list[Callable[[tables.InvoiceItem], tuple[str, ...]]] = [
        lambda i: (i.product, i.region or "global"),
        lambda i: (i.product,),
    ]
    for key in keys:
        groups: dict[tuple[str, ...], list[tables.InvoiceItem]] = {}
        for item in ordered:
            groups.setdefault(key(item), []).append(item)
        if len(groups) <= cap:
            break
    else:
        # More than 250 distinct products: fold the smallest into one "other" group per kind.
        groups = {}
        for item in ordered:
            groups.setdefault((item.kind,), []).append(item)
    out = []
    for parts, members in sorted(groups.items()):
        start, end = _period(invoice, members)
        words = [_label(parts[0]), *parts[1:], f"{len(members)} lines"]
        out.append(
            RemoteLine(
                key="|".join(parts),
                key_field="group",
                amount=sum(m.amount_cents for m in members),
                description=", ".join(words),
                period_start=start,
                period_end=end,
            )
        )
    return out
