"""Invoice totals: the one rule and the one writer.

The rule: an invoice's subtotal is the sum of its stored line amounts (each amount computed once,
when the line is written, with `money.line_amount_cents`), its total equals its subtotal (no
taxes or discounts: the CHECK total_is_subtotal says so), and line_item_count is its number of
lines. `recompute` is the only code that writes these columns (tests/test_one_place.py): adding
lines by hand, the ingest, the usage replay and finalize all call it after they wrote lines, so a
draft's totals can never drift from its lines by a missed delta. `subtotal_of` is the same rule
for lines that are not stored (the preview of the month so far).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import NamedTuple

import sqlalchemy as sa
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session

from models import tables


class Totals(NamedTuple):
    lines: int
    subtotal_cents: int


def subtotal_of(amounts: Iterable[int]) -> int:
    """The subtotal (and total) of lines with these amounts, in cents: their exact integer sum."""
    return sum(amounts)


def recompute(session: Session, invoice_ids: Sequence[int], *, now: datetime) -> dict[int, Totals]:
    """Set the DRAFTS among `invoice_ids` to the totals of their stored lines, in one statement
    (whatever N), and return them per draft (finalized invoices are immutable and are left out).
    Caller holds the drafts' row locks and commits.

    Reads the lines on ix_invoice_items_invoice_id_id: O(lines of these drafts). Invoice rows of
    the session's identity map get the new values too (as loaded, not as changes), so an ORM
    caller reads what the database holds without a refresh."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return {}
    rows = session.execute(
        sa.text(
            "UPDATE invoices AS i SET subtotal_cents = t.subtotal, total_cents = t.subtotal, "
            "line_item_count = t.n, updated_at = :now "
            "FROM (SELECT w.id, count(l.id) AS n, coalesce(sum(l.amount_cents), 0) AS subtotal "
            "FROM unnest(CAST(:ids AS bigint[])) AS w(id) "
            "LEFT JOIN invoice_items l ON l.invoice_id = w.id GROUP BY w.id) AS t "
            "WHERE i.id = t.id AND i.status = :draft RETURNING i.id, t.n, t.subtotal"
        ),
        {"ids": ids, "now": now, "draft": tables.InvoiceStatus.DRAFT.value},
    ).all()
    found = {int(r.id): Totals(int(r.n), int(r.subtotal)) for r in rows}
    for invoice_id, t in found.items():
        loaded = session.identity_map.get(session.identity_key(tables.Invoice, invoice_id))
        if loaded is not None:
            for column, value in (
                ("subtotal_cents", t.subtotal_cents),
                ("total_cents", t.subtotal_cents),
                ("line_item_count", t.lines),
                ("updated_at", now),
            ):
                set_committed_value(loaded, column, value)
    return found
