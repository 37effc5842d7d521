"""`close.run`: the driver of the month-end close, for the CLI and the beat task.

Unlike the rest of `models/`, this module owns transactions, as a task does (it takes a session
factory): one short one to open the run, then, per chunk, a claim transaction that holds the
chunk's `SKIP LOCKED` row locks while each of its drafts is closed in a transaction of its own
(on a second connection), and the run's counters refreshed at the end of the chunk. An error on
one draft rolls back that draft only; it is recorded (`cycle.record_failure`) and the loop goes
on. A closer killed anywhere loses at most its open invoice transaction (rolled back by
PostgreSQL) and its claim (released with its connection): the next run takes the rest.

Chunk size: 200 drafts, i.e. about half a second of row locks at the benchmark's rate: long
enough that claiming is noise, short enough that a second closer never waits for work.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import date, datetime

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import cycle
from models.cycle import Outcome
from models.db import transaction

DEFAULT_CHUNK = 200


@dataclass
class Progress:
    """What this closer did (the run's own counters, for every closer, are in billing_runs)."""

    period: date
    drafts: int = 0  # of the period, at the start (for a progress bar)
    todo: int = 0  # still to close at the start
    counts: dict[Outcome, int] = field(default_factory=lambda: {o: 0 for o in Outcome})
    finished: bool = False
    last_error: str | None = None

    @property
    def done(self) -> int:
        return sum(self.counts.values())


def run(
    factory: sessionmaker[Session],
    period: date,
    *,
    clock: Callable[[], datetime],
    rollup_shards: int,
    chunk: int = DEFAULT_CHUNK,
    enqueue_sync: Callable[[int], None] | None = None,
    on_invoice: Callable[[Progress, int, Outcome], None] | None = None,
) -> Progress:
    """Close every draft of `period` that no other closer holds; safe to run twice, and side by
    side. Returns this closer's tally; `finished` once nothing but failures is left."""
    with transaction(factory) as s:
        opened = cycle.open_run(s, period, now=clock())
        todo = cycle.remaining(s, period)
    progress = Progress(period, drafts=opened.drafts, todo=todo)
    pass_started = clock()
    while True:
        with factory() as claim_session, claim_session.begin():
            ids = cycle.claim(claim_session, period, limit=chunk, failed_since=pass_started)
            if not ids:
                break
            for invoice_id in ids:
                outcome = _close_one(factory, invoice_id, clock, rollup_shards, progress)
                progress.counts[outcome] += 1
                if outcome == Outcome.FINALIZED and enqueue_sync is not None:
                    enqueue_sync(invoice_id)  # after commit; the sweeper covers a lost one
                if on_invoice is not None:
                    on_invoice(progress, invoice_id, outcome)
        with transaction(factory) as s:
            cycle.refresh_run(s, period, now=clock())
    with transaction(factory) as s:
        final = cycle.refresh_run(s, period, now=clock(), finish=True)
    progress.finished = final.finished_at is not None
    return progress


def _close_one(
    factory: sessionmaker[Session],
    invoice_id: int,
    clock: Callable[[], datetime],
    rollup_shards: int,
    progress: Progress,
) -> Outcome:
    try:
        with transaction(factory) as s:
            return cycle.close_invoice(
                s, invoice_id, now=clock(), rollup_shards=rollup_shards
            ).outcome
    except Exception as error:  # one draft's failure must not stop the close
        # NOTE: anything, not only DomainError: a trigger refusing a line or a lost connection
        # on one invoice is recorded on that invoice, for an operator, and the close goes on.
        with transaction(factory) as s:
            progress.last_error = cycle.record_failure(s, invoice_id, error, now=clock())
        return Outcome.FAILED
