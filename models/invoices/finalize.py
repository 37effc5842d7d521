"""Finalize: DRAFT -> OPEN for N drafts at once, the one implementation (docs/architecture.md, "One implementation per business rule").

`finalizeInvoice` (through `lifecycle.finalize`, N = 1), the month-end close (a chunk of 200,
and its per-invoice fallback, N = 1), the demo seed and the tests' factories all run this code.
What a finalize writes, each in one statement whatever N:
- the totals, from the stored lines (`totals.recompute`);
- the organization's next gap-free numbers (`numbering.next_invoice_numbers`: one upsert, in
  organization order, so two finalizers never wait on each other in a cycle);
- status OPEN, number, finalized_at, the default due date (DEFAULT_PAYMENT_TERMS after the
  finalize day, unless the draft has one);
- the outbox rows (`outbox.write_pending`, PENDING, due now);
- the rollup delta (`rollup.apply_finalized`);
- the outbound `invoice.finalized` events (`webhooks_out.events.emit_finalized`).

Locks: the callers lock the drafts first, with `lock` (FOR UPDATE, in id order: the order of
`staging.place`'s FOR NO KEY UPDATE, so an ingest racing a finalize either gets in before, and
its usage is on the invoice because totals are read after the lock, or waits and then sees
OPEN). Then the number counters. The lifecycle triggers (0001/0003) run on every row.

Nothing here commits; the caller commits, then enqueues the syncs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from models import rollup, tables
from models.invoices import numbering, totals
from models.sync_state import outbox
from models.webhooks_out import events as webhook_events

DEFAULT_PAYMENT_TERMS = timedelta(days=14)


@dataclass(frozen=True)
class Locked:
    """A locked invoice row, with what finalize and the close need to know of it."""

    id: int
    organization_id: int
    status: str
    number: str | None
    currency: str
    period_start: date
    period_end: date
    line_item_count: int
    invoice_prefix: str


@dataclass
class Finalized:
    finalized: list[int] = field(default_factory=list)  # now OPEN, in id order
    empty: list[int] = field(default_factory=list)  # no lines: left a draft


def lock(session: Session, invoice_ids: Sequence[int]) -> dict[int, Locked]:
    """The invoices among `invoice_ids` that exist, locked FOR UPDATE in id order (invoices_pkey)
    until the caller's transaction ends, re-read from the database. One statement."""
    ids = sorted(set(invoice_ids))
    if not ids:
        return {}
    rows = session.execute(
        sa.text(
            "SELECT i.id, i.organization_id, i.status, i.number, i.currency, i.period_start, "
            "i.period_end, i.line_item_count, o.invoice_prefix FROM invoices i "
            "JOIN organizations o ON o.id = i.organization_id "
            "WHERE i.id = ANY(CAST(:ids AS bigint[])) ORDER BY i.id FOR UPDATE OF i"
        ),
        {"ids": ids},
    ).all()
    return {int(r.id): Locked(**_fields(r)) for r in rows}


def _fields(r: Any) -> dict[str, Any]:
    return {
        "id": int(r.id),
        "organization_id": int(r.organization_id),
        "status": str(r.status),
        "number": r.number,
        "currency": r.currency.strip(),
        "period_start": r.period_start,
        "period_end": r.period_end,
        "line_item_count": int(r.line_item_count),
        "invoice_prefix": r.invoice_prefix,
    }


def finalize_locked(
    session: Session, drafts: Sequence[Locked], *, now: datetime, rollup_shards: int
) -> Finalized:
    """DRAFT -> OPEN for these drafts, which the caller locked with `lock` in this transaction
    and found to be DRAFTs. A draft with no lines is not finalized (`empty`). Raises Busy (the
    number lock timed out) or whatever the database raises; the caller rolls back. Caller
    commits, then enqueues the syncs."""
    result = Finalized()
    if not drafts:
        return result
    sums = totals.recompute(session, [d.id for d in drafts], now=now)
    finalizing = []
    for d in sorted(drafts, key=lambda d: d.id):
        if d.id not in sums:
            # Locked as a DRAFT by the caller, so recompute saw it; anything else is a bug.
            raise RuntimeError(f"invoice {d.id} is no draft any more under its row lock")
        if sums[d.id].lines > 0:
            finalizing.append(d)
        else:
            result.empty.append(d.id)
    if not finalizing:
        return result
    ids = [d.id for d in finalizing]
    numbers = numbering.next_invoice_numbers(
        session, [(d.organization_id, d.invoice_prefix) for d in finalizing]
    )
    updated = session.execute(
        sa.text(
            "UPDATE invoices AS i SET status = :open, number = v.number, finalized_at = :now, "
            "due_date = coalesce(i.due_date, :due), updated_at = :now "
            "FROM unnest(CAST(:ids AS bigint[]), CAST(:numbers AS text[])) AS v(id, number) "
            "WHERE i.id = v.id AND i.status = :draft"
        ),
        {
            "ids": ids,
            "numbers": numbers,
            "now": now,
            "due": now.date() + DEFAULT_PAYMENT_TERMS,
            "open": tables.InvoiceStatus.OPEN.value,
            "draft": tables.InvoiceStatus.DRAFT.value,
        },
    )
    if updated.rowcount != len(ids):  # type: ignore[attr-defined]
        # Every row is locked and was a draft; anything else is a bug, and rolls back.
        raise RuntimeError(f"finalized {updated.rowcount} of {len(ids)} locked drafts")  # type: ignore[attr-defined]
    outbox.write_pending(session, ids, now=now)
    rollup.apply_finalized(session, ids, shards=rollup_shards)
    webhook_events.emit_finalized(session, ids, now=now)
    result.finalized = ids
    return result
