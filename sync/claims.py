"""The worker's side of the outbox: leases, outcomes and the sweeper's claim. Explicit SQL,
because the exact conditions are the concurrency protocol."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlmodel import Session

from sync.classify import Verdict

_CLAIM = sa.text(
    """
    UPDATE invoice_sync
    SET state = 'syncing', lease_owner = :owner, locked_until = now() + make_interval(secs => :lease),
        attempts = attempts + 1, last_attempt_at = now(), updated_at = now()
    WHERE invoice_id = :id
      AND (state IN ('pending', 'retrying') OR (state = 'syncing' AND locked_until < now()))
    RETURNING revision, attempts, verify_requested
    """
)


@dataclass(frozen=True)
class Lease:
    invoice_id: int
    owner: str
    revision: int
    attempt: int
    verify_requested: bool


def claim(session: Session, invoice_id: int, *, owner: str, lease_seconds: float) -> Lease | None:
    """Take the invoice for this worker, or None when it is not due or another worker holds a
    live lease. The conditional UPDATE is atomic: of two workers, exactly one gets the row."""
    row = session.execute(
        _CLAIM, {"id": invoice_id, "owner": owner, "lease": lease_seconds}
    ).first()
    if row is None:
        return None
    return Lease(
        invoice_id, owner, int(row.revision), int(row.attempts), bool(row.verify_requested)
    )


def succeed(session: Session, lease: Lease) -> None:
    """SYNCED, unless a void or resync arrived during the attempt (revision moved): then the row
    stays due for one more pass."""
    session.execute(
        sa.text(
            """
            UPDATE invoice_sync SET
                state = CASE WHEN revision = :rev THEN 'synced' ELSE 'pending' END,
                synced_at = now(), next_attempt_at = now(),
                verify_requested = CASE WHEN revision = :rev THEN false ELSE verify_requested END,
                locked_until = NULL, lease_owner = NULL, updated_at = now(),
                last_error_class = NULL, last_error_code = NULL, last_error_message = NULL,
                last_error_http_status = NULL, last_error_request_id = NULL
            WHERE invoice_id = :id AND lease_owner = :owner
            """
        ),
        {"id": lease.invoice_id, "owner": lease.owner, "rev": lease.revision},
    )


def fail(
    session: Session,
    lease: Lease,
    verdict: Verdict,
    *,
    state: str,
    next_attempt_at: datetime | None,
    refund_attempt: bool = False,
) -> None:
    """RETRYING (with the next attempt's time) or FAILED, with the error for people to read."""
    session.execute(
        sa.text(
            """
            UPDATE invoice_sync SET
                state = :state, next_attempt_at = :next, locked_until = NULL, lease_owner = NULL,
                attempts = attempts - :refund, updated_at = now(),
                last_error_class = :cls, last_error_code = :code, last_error_message = :msg,
                last_error_http_status = :status, last_error_request_id = :rid
            WHERE invoice_id = :id AND lease_owner = :owner
            """
        ),
        {
            "id": lease.invoice_id,
            "owner": lease.owner,
            "state": state,
            "next": next_attempt_at,
            "refund": 1 if refund_attempt else 0,
            "cls": verdict.error_class,
            "code": verdict.code,
            "msg": (verdict.message or "")[:2000],
            "status": verdict.http_status,
            "rid": verdict.request_id,
        },
    )


_SWEEP = sa.text(
    """
    UPDATE invoice_sync SET next_attempt_at = now() + make_interval(secs => :hold)
    WHERE invoice_id IN (
        SELECT invoice_id FROM invoice_sync
        WHERE (state IN ('pending', 'retrying') AND next_attempt_at <= now())
           OR (state = 'syncing' AND locked_until < now())
        ORDER BY next_attempt_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    RETURNING invoice_id
    """
)


def sweep_due(session: Session, *, batch: int, hold_seconds: float) -> list[int]:
    """Due rows and expired leases, claimed for enqueueing. Uses ix_invoice_sync_state_next_attempt_at.

    SKIP LOCKED lets two sweepers (two beats by mistake, or a slow one) split the work instead of
    queueing behind each other; pushing next_attempt_at forward by `hold` keeps the next sweep
    from enqueueing the same rows again while their messages wait in the queue.
    """
    return [int(r[0]) for r in session.execute(_SWEEP, {"batch": batch, "hold": hold_seconds})]


def mark_for_reconcile(session: Session, *, older_than: timedelta, batch: int) -> list[int]:
    """Synced invoices not verified for a while, made due with verify_requested."""
    rows = session.execute(
        sa.text(
            """
            UPDATE invoice_sync SET state = 'pending', verify_requested = true, revision = revision + 1,
                next_attempt_at = now(), updated_at = now()
            WHERE invoice_id IN (
                SELECT invoice_id FROM invoice_sync
                WHERE state = 'synced' AND synced_at < now() - make_interval(secs => :age)
                ORDER BY synced_at LIMIT :batch FOR UPDATE SKIP LOCKED
            )
            RETURNING invoice_id
            """
        ),
        {"age": older_than.total_seconds(), "batch": batch},
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
    session.execute(
        sa.text(
            """
            INSERT INTO sync_attempts (invoice_id, attempt, step, outcome, started_at, duration_ms, calls,
                error_class, error_code, error_message, http_status, request_id)
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
