"""`close_drafts`: DRAFT -> OPEN for a whole chunk of the close in a dozen set-based statements,
with the same result per draft as `cycle.close_invoice` (recurring lines, then what
`lifecycle.finalize` does: totals from the stored lines, gap-free number, outbox row, rollup
delta, billing_run_invoices row).

Why: the per-invoice ORM path costs ~17 statements, 4 flushes and ~12 ms of Python per draft
(profile of 2,000 drafts, README "Runbook: the month-end close"), about 70 invoices/s on one
core; the month-end target is 400/s. Here a chunk of 200 costs the same ~13 statements as a
chunk of 3.

Same guarantees, same locks:
- The drafts' invoice rows are locked FOR UPDATE in id order first, as `lifecycle.get_for_update`
  does one by one; the ingest locks drafts FOR NO KEY UPDATE in id order too, so an event
  either gets in before (and is on the invoice: totals are read after the lock) or waits and
  sees OPEN (late usage on the next draft). No lock-order cycle with it.
- A row that is no DRAFT any more (finalized by hand after the claim) is ALREADY; an empty one
  (no lines after the recurring ones) is SKIPPED and left a draft, as `close_invoice` decides.
- Failures that can be foreseen in Python (a plan with no price, a bad plan line, too many
  lines) are not written at all: those drafts are returned as `isolated`, and the caller closes
  each alone with `cycle.close_invoice`, which raises and records the coded error. Anything
  else (a trigger, a lock timeout, a lost connection) raises out of here: the caller rolls the
  chunk back and falls back to the per-invoice path for every draft of it.
- Numbers come from `numbering.next_invoice_numbers` (one upsert, organization order), the
  outbox rows from `outbox.write_pending_many`, the rollup from `rollup.apply_finalized`: the
  same rules as the single-invoice functions, one statement each. The lifecycle triggers
  (0001/0003) run on every row as before.

Caller owns the transaction (commits, then enqueues the syncs).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import rollup, tables
from models.close import cycle
from models.close.cycle import Outcome
from models.errors import DomainError
from models.ids import new_public_id
from models.invoices import lifecycle, numbering
from models.prices import load_book
from models.sync_state import outbox
from models.webhooks_out import events as webhook_events


@dataclass
class ChunkClosed:
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # FINALIZED, SKIPPED, ALREADY
    isolated: list[int] = field(default_factory=list)  # for the per-invoice path, in id order

    @property
    def finalized(self) -> list[int]:
        return [i for i, o in self.outcomes.items() if o == Outcome.FINALIZED]


# The drafts, locked in id order (invoices_pkey), with what the close needs to know of them.
_LOCK = sa.text(
    "SELECT i.id, i.organization_id, i.status, i.currency, i.period_start, i.period_end, "
    "i.line_item_count, o.invoice_prefix FROM invoices i "
    "JOIN organizations o ON o.id = i.organization_id "
    "WHERE i.id = ANY(CAST(:ids AS bigint[])) ORDER BY i.id FOR UPDATE OF i"
)

# Count and sum of the stored line amounts (ix_invoice_items_invoice_id), as finalize does.
_TOTALS = sa.text(
    "SELECT invoice_id, count(*) AS n, sum(amount_cents) AS subtotal FROM invoice_items "
    "WHERE invoice_id = ANY(CAST(:ids AS bigint[])) GROUP BY invoice_id"
)

_FINALIZE = sa.text(
    "UPDATE invoices AS i SET status = :open, number = v.number, line_item_count = v.n, "
    "subtotal_cents = v.subtotal, total_cents = v.subtotal, finalized_at = :now, "
    "due_date = coalesce(i.due_date, :due), updated_at = :now "
    "FROM unnest(CAST(:ids AS bigint[]), CAST(:numbers AS text[]), CAST(:ns AS int[]), "
    "CAST(:subtotals AS bigint[])) AS v(id, number, n, subtotal) "
    "WHERE i.id = v.id AND i.status = :draft"
)


def close_drafts(
    session: Session, invoice_ids: Sequence[int], *, now: datetime, rollup_shards: int
) -> ChunkClosed:
    """Close these drafts of the close together (see the module docstring). Returns each one's
    outcome, and the drafts left for the per-invoice path. Raises whatever the database raises;
    the caller rolls back. Caller commits."""
    result = ChunkClosed()
    ids = sorted(set(invoice_ids))
    if not ids:
        return result
    rows = {int(r.id): r for r in session.execute(_LOCK, {"ids": ids})}
    drafts = []
    for invoice_id in ids:
        row = rows.get(invoice_id)
        if row is None:
            result.isolated.append(invoice_id)  # gone: let the per-invoice path say so
        elif row.status != tables.InvoiceStatus.DRAFT:
            result.outcomes[invoice_id] = Outcome.ALREADY
        else:
            drafts.append(row)
    if not drafts:
        return result
    items, closing = _recurring_items(session, drafts, now=now, isolated=result.isolated)
    if items:
        session.execute(sa.insert(tables.InvoiceItem.__table__), items)  # type: ignore[attr-defined]
    totals = {
        int(t.invoice_id): (int(t.n), int(t.subtotal))
        for t in session.execute(_TOTALS, {"ids": [r.id for r in closing]})
    }
    finalizing = [r for r in closing if totals.get(r.id, (0, 0))[0] > 0]
    skipped = [int(r.id) for r in closing if totals.get(r.id, (0, 0))[0] == 0]
    if finalizing:
        _finalize(session, finalizing, totals, now=now, rollup_shards=rollup_shards)
        cycle.record_outcomes(session, [int(r.id) for r in finalizing], Outcome.FINALIZED, now=now)
    if skipped:
        cycle.record_outcomes(session, skipped, Outcome.SKIPPED, now=now)
    for r in finalizing:
        result.outcomes[int(r.id)] = Outcome.FINALIZED
    for invoice_id in skipped:
        result.outcomes[invoice_id] = Outcome.SKIPPED
    result.isolated.sort()
    return result


def _recurring_items(
    session: Session, drafts: list[Any], *, now: datetime, isolated: list[int]
) -> tuple[list[dict[str, Any]], list[Any]]:
    """The SUBSCRIPTION line rows of every draft (one subscriptions query, one price book), and
    the drafts whose lines are all valid. A draft with a foreseeable failure goes to
    `isolated` and gets no line."""
    orgs = sorted({int(r.organization_id) for r in drafts})
    starts = [r.period_start for r in drafts]
    ends = [r.period_end for r in drafts]
    s = tables.Subscription
    subs_of: dict[int, list[tables.Subscription]] = defaultdict(list)
    for sub in session.exec(
        select(s)
        .where(
            col(s.organization_id).in_(orgs),
            col(s.since) < max(ends),
            sa.or_(col(s.until).is_(None), col(s.until) > min(starts)),
        )
        .order_by(col(s.id))
    ):
        subs_of[sub.organization_id].append(sub)
    book = None
    if subs_of:
        book = load_book(
            session,
            products=sorted({x.product for subs in subs_of.values() for x in subs}),
            currencies=sorted({r.currency.strip() for r in drafts}),
            organization_ids=sorted(subs_of),
            until=cycle.midnight(max(starts)),
        )
    items: list[dict[str, Any]] = []
    closing = []
    for r in drafts:
        subs = [x for x in subs_of.get(r.organization_id, []) if cycle.overlaps(
            x, r.period_start, r.period_end)]  # fmt: skip
        if not subs:
            closing.append(r)
            continue
        assert book is not None
        try:
            lines = cycle.plan_lines(
                subs,
                book,
                organization_id=int(r.organization_id),
                currency=r.currency.strip(),
                period_start=r.period_start,
                period_end=r.period_end,
            )
            values = [lifecycle.line_values(line) for line in lines]
        except DomainError:
            isolated.append(int(r.id))  # `close_invoice` raises the same error, and records it
            continue
        if (
            len(lines) > lifecycle.MAX_ITEMS_PER_CALL
            or r.line_item_count + len(lines) > lifecycle.MAX_ITEMS_PER_INVOICE
        ):
            isolated.append(int(r.id))  # TooManyItems from `add_lines`
            continue
        for v in values:
            v["metadata"] = v.pop("metadata_")
            items.append(
                {"public_id": new_public_id("li"), "invoice_id": int(r.id), "created_at": now, **v}
            )
        closing.append(r)
    return items, closing


def _finalize(
    session: Session,
    drafts: list[Any],
    totals: dict[int, tuple[int, int]],
    *,
    now: datetime,
    rollup_shards: int,
) -> None:
    ids = [int(r.id) for r in drafts]
    numbers = numbering.next_invoice_numbers(
        session, [(int(r.organization_id), r.invoice_prefix) for r in drafts]
    )
    updated = session.execute(
        _FINALIZE,
        {
            "ids": ids,
            "numbers": numbers,
            "ns": [totals[i][0] for i in ids],
            "subtotals": [totals[i][1] for i in ids],
            "now": now,
            "due": now.date() + lifecycle.DEFAULT_PAYMENT_TERMS,
            "open": tables.InvoiceStatus.OPEN.value,
            "draft": tables.InvoiceStatus.DRAFT.value,
        },
    )
    if updated.rowcount != len(ids):  # type: ignore[attr-defined]
        # Every row is locked and was a draft; anything else is a bug, and rolls the chunk back.
        raise RuntimeError(f"finalized {updated.rowcount} of {len(ids)} locked drafts")  # type: ignore[attr-defined]
    outbox.write_pending_many(session, ids, now=now)
    webhook_events.emit_finalized(session, ids, now=now)
    rollup.apply_finalized(session, ids, shards=rollup_shards)
