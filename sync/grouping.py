"""What Stripe should hold for an invoice: one remote line per line item, or grouped lines.

Stripe caps an invoice at 250 invoice items, and a busy month has thousands of usage lines. Past
the cap, the lines are grouped deterministically: by product and region, by product alone if
that is still too many, by kind as the last resort. Each group carries the exact sum of its
lines' amounts, so Stripe's total is ours to the cent, and the same items always give the same
groups in the same order, so a retry sends the same parameters under the same keys. The detail
stays ours to show.

A pure function of the items: no database, no Stripe.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Protocol

STRIPE_MAX_LINES = 250
# Stripe metadata values are at most 500 characters; descriptions are kept to the same size.
MAX_TEXT = 500
LINE_KEY = "line_item_id"
GROUP_KEY = "group"


class Item(Protocol):
    """The fields of a line item that decide what is sent (tables.InvoiceItem has them)."""

    @property
    def id(self) -> int | None: ...
    @property
    def public_id(self) -> str: ...
    @property
    def kind(self) -> str: ...
    @property
    def product(self) -> str: ...
    @property
    def region(self) -> str | None: ...
    @property
    def description(self) -> str: ...
    @property
    def amount_cents(self) -> int: ...
    @property
    def period_start(self) -> date | None: ...
    @property
    def period_end(self) -> date | None: ...


@dataclass(frozen=True)
class RemoteLine:
    """One line as sent with add_lines. `key` goes into metadata[key_field], and is how a later
    attempt recognises the line on Stripe."""

    key_field: str  # LINE_KEY or GROUP_KEY
    key: str
    amount: int
    description: str
    period_start: date
    period_end: date
    item_count: int = 1

    @property
    def metadata(self) -> dict[str, str]:
        return {self.key_field: self.key}

    @property
    def grouped(self) -> bool:
        return self.key_field == GROUP_KEY


GroupKey = tuple[str, ...]
_LEVELS: tuple[Callable[[Item], GroupKey], ...] = (
    lambda i: (i.product, i.region or "global"),
    lambda i: (i.product,),
    lambda i: (f"{i.kind} charges",),
)


def remote_lines(
    items: Sequence[Item],
    *,
    period: tuple[date, date],
    cap: int = STRIPE_MAX_LINES,
) -> list[RemoteLine]:
    """The lines Stripe should hold for these items, in a stable order. `period` is the
    invoice's billing period, used for lines that have none of their own."""
    ordered = sorted(items, key=lambda i: (i.id or 0, i.public_id))
    if len(ordered) <= cap:
        return [
            RemoteLine(
                key_field=LINE_KEY,
                key=i.public_id,
                amount=i.amount_cents,
                description=i.description[:MAX_TEXT],
                period_start=i.period_start or period[0],
                period_end=i.period_end or period[1],
            )
            for i in ordered
        ]
    groups: dict[GroupKey, list[Item]] = {}
    for level in _LEVELS:
        groups = {}
        for item in ordered:
            groups.setdefault(level(item), []).append(item)
        if len(groups) <= cap:
            break
    return [_group_line(parts, members, period) for parts, members in sorted(groups.items())]


def _group_line(parts: GroupKey, members: Sequence[Item], period: tuple[date, date]) -> RemoteLine:
    # The group spans its lines' own periods (the invoice's for a line that has none).
    starts = [m.period_start or period[0] for m in members]
    ends = [m.period_end or period[1] for m in members]
    count = f"{len(members)} line" + ("" if len(members) == 1 else "s")
    description = ", ".join([_label(parts[0]), *parts[1:], count])
    return RemoteLine(
        key_field=GROUP_KEY,
        key=_group_key(parts),
        amount=sum(m.amount_cents for m in members),
        description=description[:MAX_TEXT],
        period_start=min(starts),
        period_end=max(ends),
        item_count=len(members),
    )


def _label(product: str) -> str:
    """`egress` -> `Egress`, `machines-shared-cpu` -> `Machines shared cpu`."""
    words = product.replace("-", " ").replace("_", " ")
    return words[:1].upper() + words[1:]


def _group_key(parts: GroupKey) -> str:
    key = "|".join(parts)
    if len(key) <= MAX_TEXT:
        return key
    return key[:100] + "|" + hashlib.sha256(key.encode()).hexdigest()
