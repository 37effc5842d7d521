"""`close_drafts`: DRAFT -> OPEN for drafts of the close, a whole chunk in a dozen set-based
statements: lock the drafts, add their recurring lines (`recurring.lines_for`), finalize them
(`models.invoices.finalize`, the one finalize), record each one's outcome in
billing_run_invoices. `close_invoice`, the driver's per-invoice fallback, is the same function
for one draft, raising the draft's error instead of handing it back.

Why set-based: the per-invoice ORM path cost ~17 statements, 4 flushes and ~12 ms of Python per
draft (profile of 2,000 drafts, README "Runbook: the month-end close"), about 70 invoices/s on
one core; the month-end target is 400/s. Here a chunk of 200 costs the same ~13 statements as a
chunk of 3.

Guarantees and locks:
- The drafts' invoice rows are locked FOR UPDATE in id order first (`finalize.lock`); the ingest
  locks drafts FOR NO KEY UPDATE in id order too, so an event either gets in before (and is on
  the invoice: totals are read after the lock) or waits and sees OPEN (late usage on the next
  draft). No lock-order cycle with it. Then the number counters, in organization order.
- A row that is no DRAFT any more (finalized by hand after the claim) is ALREADY; an empty one
  (no lines after the recurring ones) is SKIPPED and left a draft.
- Failures that can be foreseen in Python (a plan with no price, a bad plan line, too many
  lines) are not written at all: in a chunk those drafts are returned as `isolated`, and the
  driver closes each alone with `close_invoice`, which raises the coded error (the driver
  records it). Anything else (a trigger, a lock timeout, a lost connection) raises out of here:
  the caller rolls the chunk back and falls back to `close_invoice` for every draft of it.

Caller owns the transaction (commits, then enqueues the syncs).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from models import tables
from models.close import cycle
from models.close.cycle import Closed, Outcome
from models.errors import DomainError, NotFound, TooManyItems
from models.ids import new_public_id
from models.invoices import finalize, lifecycle, recurring


@dataclass
class ChunkClosed:
    outcomes: dict[int, Outcome] = field(default_factory=dict)  # FINALIZED, SKIPPED, ALREADY
    isolated: list[int] = field(default_factory=list)  # for the per-invoice path, in id order

    @property
    def finalized(self) -> list[int]:
        return [i for i, o in self.outcomes.items() if o == Outcome.FINALIZED]


def close_drafts(
    session: Session,
    invoice_ids: Sequence[int],
    *,
    now: datetime,
    rollup_shards: int,
    isolate: bool = True,
) -> ChunkClosed:
    """Close these drafts of the close together (see the module docstring). Returns each one's
    outcome, and (with `isolate`) the drafts left for the per-invoice path; without it, raises
    the first such draft's DomainError. Raises whatever the database raises; the caller rolls
    back. Caller commits."""
    result = ChunkClosed()
    ids = sorted(set(invoice_ids))
    if not ids:
        return result
    rows = finalize.lock(session, ids)
    drafts = []
    for invoice_id in ids:
        row = rows.get(invoice_id)
        if row is None:
            if not isolate:
                raise NotFound("invoice not found", field=("invoiceId",))
            result.isolated.append(invoice_id)  # gone: let the per-invoice path say so
        elif row.status != tables.InvoiceStatus.DRAFT:
            result.outcomes[invoice_id] = Outcome.ALREADY
        else:
            drafts.append(row)
    if not drafts:
        return result
    items, closing = _recurring_items(session, drafts, now=now, isolated=result.isolated,
                                      isolate=isolate)  # fmt: skip
    if items:
        session.execute(sa.insert(tables.InvoiceItem.__table__), items)  # type: ignore[attr-defined]
    done = finalize.finalize_locked(session, closing, now=now, rollup_shards=rollup_shards)
    if done.finalized:
        cycle.record_outcomes(session, done.finalized, Outcome.FINALIZED, now=now)
    if done.empty:
        cycle.record_outcomes(session, done.empty, Outcome.SKIPPED, now=now)
    for invoice_id in done.finalized:
        result.outcomes[invoice_id] = Outcome.FINALIZED
    for invoice_id in done.empty:
        result.outcomes[invoice_id] = Outcome.SKIPPED
    result.isolated.sort()
    return result


def close_invoice(
    session: Session, invoice_id: int, *, now: datetime, rollup_shards: int
) -> Closed:
    """`close_drafts` for one draft (the driver's per-invoice fallback): FINALIZED, SKIPPED (no
    lines at all: left an empty draft) or ALREADY. Raises the draft's DomainError
    (UNKNOWN_PRODUCT: a plan with no price; TOO_MANY_ITEMS). Caller commits, then enqueues the
    sync."""
    closed = close_drafts(session, [invoice_id], now=now, rollup_shards=rollup_shards,
                          isolate=False)  # fmt: skip
    invoice = session.get_one(tables.Invoice, invoice_id, populate_existing=True)
    return Closed(closed.outcomes[invoice_id], invoice)


def _recurring_items(
    session: Session,
    drafts: list[finalize.Locked],
    *,
    now: datetime,
    isolated: list[int],
    isolate: bool,
) -> tuple[list[dict[str, Any]], list[finalize.Locked]]:
    """The SUBSCRIPTION line rows of every draft, and the drafts whose lines are all valid. A
    draft with a foreseeable failure goes to `isolated` and gets no line (or, without
    `isolate`, its error is raised)."""
    periods = [
        recurring.Period(r.organization_id, r.currency, r.period_start, r.period_end)
        for r in drafts
    ]
    items: list[dict[str, Any]] = []
    closing = []
    for r, lines in zip(drafts, recurring.lines_for(session, periods), strict=True):
        if isinstance(lines, DomainError):
            if not isolate:
                raise lines
            isolated.append(r.id)  # `close_invoice` raises the same error; the driver records it
            continue
        if (
            len(lines) > lifecycle.MAX_ITEMS_PER_CALL
            or r.line_item_count + len(lines) > lifecycle.MAX_ITEMS_PER_INVOICE
        ):
            if not isolate:
                raise TooManyItems(
                    f"an invoice holds at most {lifecycle.MAX_ITEMS_PER_INVOICE} line items",
                    field=("items",),
                )
            isolated.append(r.id)
            continue
        for v in lines:
            row = {k: v[k] for k in v if k != "metadata_"}
            items.append({"public_id": new_public_id("li"), "invoice_id": r.id,
                          "created_at": now, "metadata": v["metadata_"], **row})  # fmt: skip
        closing.append(r)
    return items, closing
