"""The worker's side of the outbox (`invoice_sync`): claims, outcomes, the sweeper's batch, the
reconciler's batch and the attempt history. Explicit SQL, because the exact conditions are the
concurrency protocol; every time is the database's `now()`, so worker clocks never matter.

Row states: PENDING (do it now), RETRYING (do it at next_attempt_at), SYNCING (a worker holds
the lease until locked_until), SYNCED, FAILED. On a PENDING or RETRYING row, locked_until means
"enqueued by the sweeper, message in flight until then", so the next sweeps leave it alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from sync.classify import Verdict

_CLAIM = sa.text(
    """
    WITH due AS (
        SELECT invoice_id, last_attempt_at FROM invoice_sync
        WHERE invoice_id = :id
          AND (state = 'pending'
               OR (state = 'retrying' AND next_attempt_at <= now())
               OR (state = 'syncing' AND locked_until < now()))
        FOR UPDATE SKIP LOCKED
    )
    UPDATE invoice_sync AS s
    SET state = 'syncing', lease_owner = :owner,
        locked_until = now() + make_interval(secs => :lease),
        attempts = s.attempts + 1, last_attempt_at = now(), updated_at = now()
    FROM due
    WHERE s.invoice_id = due.invoice_id
    RETURNING s.revision, s.attempts, s.verify_requested,
              due.last_attempt_at IS NOT NULL AS claimed_before
    """
)


@dataclass(frozen=True)
class Lease:
    invoice_id: int
    owner: str
    revision: int
    attempt: int
    verify_requested: bool
    # Some earlier attempt may have reached Stripe (its answer lost, or it crashed before
    # storing the id), so objects must be looked up before they are created.
    claimed_before: bool


def claim(session: Session, invoice_id: int, *, owner: str, lease_seconds: float) -> Lease | None:
    """Take the invoice for this attempt, or None: not due, or someone holds it. SKIP LOCKED:
    of two workers (or a worker and a sweeper) only one gets the row, and nobody waits; the
    loser's message is simply spent, the winner does the work."""
    row = session.execute(
        _CLAIM, {"id": invoice_id, "owner": owner, "lease": lease_seconds}
    ).first()
    if row is None:
        return None
    return Lease(
        invoice_id=invoice_id,
        owner=owner,
        revision=int(row.revision),
        attempt=int(row.attempts),
        verify_requested=bool(row.verify_requested),
        claimed_before=bool(row.claimed_before),
    )


def succeed(session: Session, lease: Lease) -> str | None:
    """SYNCED, unless a void or a resync arrived during the attempt (the revision moved): then
    PENDING, for one more pass. Returns the new state, or None if the lease was lost."""
    row = session.execute(
        sa.text(
            """
            UPDATE invoice_sync SET
                state = CASE WHEN revision = :rev THEN 'synced' ELSE 'pending' END,
                synced_at = CASE WHEN revision = :rev THEN now() ELSE synced_at END,
                next_attempt_at = CASE WHEN revision = :rev THEN NULL ELSE now() END,
                verify_requested = CASE WHEN revision = :rev THEN false ELSE verify_requested END,
                locked_until = NULL, lease_owner = NULL, updated_at = now(),
                last_error_class = NULL, last_error_code = NULL, last_error_message = NULL,
                last_error_http_status = NULL, last_error_request_id = NULL
            WHERE invoice_id = :id AND lease_owner = :owner
            RETURNING state
            """
        ),
        {"id": lease.invoice_id, "owner": lease.owner, "rev": lease.revision},
    ).first()
    return str(row.state) if row else None


def fail(
    session: Session,
    lease: Lease,
    verdict: Verdict,
    *,
    state: str,
    delay_seconds: float,
    refund_attempt: bool = False,
) -> str | None:
    """RETRYING (due in `delay_seconds`) or FAILED, with the error for people to read. A FAILED
    verdict on an attempt that a void or resync overtook becomes PENDING instead: that request
    deserves its own attempt. Returns the new state, or None if the lease was lost."""
    row = session.execute(
        sa.text(
            """
            UPDATE invoice_sync SET
                state = CASE WHEN :state = 'failed' AND revision <> :rev THEN 'pending'
                             ELSE :state END,
                next_attempt_at = CASE
                    WHEN :state = 'failed' AND revision <> :rev THEN now()
                    WHEN :state = 'failed' THEN NULL
                    ELSE now() + make_interval(secs => :delay) END,
                attempts = attempts - :refund, locked_until = NULL, lease_owner = NULL,
                updated_at = now(),
                last_error_class = :cls, last_error_code = :code, last_error_message = :msg,
                last_error_http_status = :status, last_error_request_id = :rid
            WHERE invoice_id = :id AND lease_owner = :owner
            RETURNING state
            """
        ),
        {
            "id": lease.invoice_id,
            "owner": lease.owner,
            "rev": lease.revision,
            "state": state,
            "delay": delay_seconds,
            "refund": 1 if refund_attempt else 0,
            "cls": verdict.error_class,
            "code": verdict.code,
            "msg": (verdict.message or "")[:2000],
            "status": verdict.http_status,
            "rid": verdict.request_id,
        },
    ).first()
    return str(row.state) if row else None


_TAKE_DUE = sa.text(
    """
    WITH due AS (
        SELECT invoice_id, state AS was, last_attempt_at FROM invoice_sync
        WHERE (state = 'pending' AND (locked_until IS NULL OR locked_until < now()))
           OR (state = 'retrying' AND next_attempt_at <= now()
               AND (locked_until IS NULL OR locked_until < now()))
           OR (state = 'syncing' AND locked_until < now())
        ORDER BY next_attempt_at NULLS FIRST
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE invoice_sync AS s SET
            state = CASE WHEN due.was <> 'syncing' THEN s.state
                         WHEN s.attempts >= :max THEN 'failed' ELSE 'retrying' END,
            next_attempt_at = CASE WHEN due.was <> 'syncing' THEN s.next_attempt_at
                                   WHEN s.attempts >= :max THEN NULL ELSE now() END,
            locked_until = CASE WHEN due.was = 'syncing' AND s.attempts >= :max THEN NULL
                                ELSE now() + make_interval(secs => :hold) END,
            lease_owner = NULL,
            last_error_class = CASE WHEN due.was = 'syncing' THEN 'WorkerLost'
                                    ELSE s.last_error_class END,
            last_error_code = CASE WHEN due.was = 'syncing' THEN 'worker_lost'
                                   ELSE s.last_error_code END,
            last_error_message = CASE WHEN due.was = 'syncing' THEN :lost_message
                                      ELSE s.last_error_message END,
            last_error_http_status = CASE WHEN due.was = 'syncing' THEN NULL
                                          ELSE s.last_error_http_status END,
            last_error_request_id = CASE WHEN due.was = 'syncing' THEN NULL
                                         ELSE s.last_error_request_id END,
            updated_at = now()
        FROM due
        WHERE s.invoice_id = due.invoice_id
        RETURNING s.invoice_id, due.was, s.state, s.attempts, due.last_attempt_at
    ), lost AS (
        INSERT INTO sync_attempts (invoice_id, attempt, step, outcome, started_at, duration_ms,
                                   calls, error_class, error_code, error_message)
        SELECT invoice_id, attempts, 'unknown', CASE WHEN state = 'failed' THEN 'failed'
                                                     ELSE 'retry' END,
               coalesce(last_attempt_at, now()),
               least(2147483647, (extract(epoch FROM now() - coalesce(last_attempt_at, now()))
                                  * 1000))::int,
               0, 'WorkerLost', 'worker_lost', :lost_message
        FROM moved WHERE was = 'syncing'
    )
    SELECT invoice_id FROM moved WHERE state <> 'failed' ORDER BY invoice_id
    """
)

LOST_MESSAGE = (
    "the worker holding this invoice stopped (crash, kill or time limit) before it finished; "
    "the attempt is retried, and its idempotency keys make that safe"
)


def take_due(session: Session, *, batch: int, hold_seconds: float, max_attempts: int) -> list[int]:
    """The sweeper's batch: due rows and expired leases, marked as enqueued for `hold_seconds`.
    Uses ix_invoice_sync_state_next_attempt_at (partial: only unsettled rows).

    SKIP LOCKED lets two sweepers (two beats by mistake, or a slow one) split the work instead
    of queueing behind each other, and skips rows a worker is claiming right now. An expired
    lease means its worker died mid-attempt: the row becomes RETRYING with the loss in its
    history, or FAILED once it has used up its attempts (an invoice that kills every worker
    that touches it must not loop forever).
    """
    rows = session.execute(
        _TAKE_DUE,
        {"batch": batch, "hold": hold_seconds, "max": max_attempts, "lost_message": LOST_MESSAGE},
    )
    return [int(r[0]) for r in rows]


def release_hold(session: Session, invoice_id: int) -> None:
    """Forget that a due row was enqueued (its message was spent without an attempt)."""
    session.execute(
        sa.text(
            "UPDATE invoice_sync SET locked_until = NULL"
            " WHERE invoice_id = :id AND state IN ('pending', 'retrying')"
        ),
        {"id": invoice_id},
    )


def mark_for_reconcile(session: Session, *, older_than_seconds: float, batch: int) -> list[int]:
    """Synced invoices not verified for a while, made due with verify_requested (as a forced
    resync does), oldest first."""
    rows = session.execute(
        sa.text(
            """
            UPDATE invoice_sync SET state = 'pending', verify_requested = true,
                revision = revision + 1, next_attempt_at = now(), updated_at = now()
            WHERE invoice_id IN (
                SELECT invoice_id FROM invoice_sync
                WHERE state = 'synced'
                  AND synced_at < now() - make_interval(secs => :age)
                ORDER BY synced_at
                LIMIT :batch
                FOR UPDATE SKIP LOCKED
            )
            RETURNING invoice_id
            """
        ),
        {"age": older_than_seconds, "batch": batch},
    )
    return [int(r[0]) for r in rows]


def record_attempt(
    session: Session,
    *,
    invoice_id: int,
    attempt: int,
    step: str,
    outcome: str,
    started_at: datetime,
    duration_ms: int,
    calls: int,
    verdict: Verdict | None = None,
) -> None:
    """One row of the invoice's sync history (shown as `syncState.history`)."""
    session.execute(
        sa.text(
            """
            INSERT INTO sync_attempts (invoice_id, attempt, step, outcome, started_at,
                duration_ms, calls, error_class, error_code, error_message, http_status,
                request_id)
            VALUES (:invoice_id, :attempt, :step, :outcome, :started_at, :duration_ms, :calls,
                :cls, :code, :msg, :status, :rid)
            """
        ),
        {
            "invoice_id": invoice_id,
            "attempt": attempt,
            "step": step,
            "outcome": outcome,
            "started_at": started_at,
            "duration_ms": duration_ms,
            "calls": calls,
            "cls": verdict.error_class if verdict else None,
            "code": verdict.code if verdict else None,
            "msg": (verdict.message or "")[:2000] if verdict else None,
            "status": verdict.http_status if verdict else None,
            "rid": verdict.request_id if verdict else None,
        },
    )
