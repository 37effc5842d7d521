"""The sync outbox, `invoice_sync`: the one owner of its state machine. Every change of a row's
state, by the API (finalize, void, resync) or by the sync worker (claim, outcome, sweep,
reconcile), is a function here, checked against `ALLOWED`.

Writing the row in the same transaction as the status change is what makes the sync impossible
to lose: a crash after commit leaves a due row that the sweeper will find. The worker's side is
explicit SQL, because the exact conditions are the concurrency protocol; its times are the
database's `now()`, so worker clocks never matter. States are bound as `SyncStatus` values.

On a PENDING or RETRYING row, `locked_until` means "enqueued by the sweeper, message in flight
until then", so the next sweeps leave it alone; on a SYNCING row it is the worker's lease.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.errors import InvalidTransition
from models.tables import SyncStatus

P, SY, SD, R, F = (
    SyncStatus.PENDING,
    SyncStatus.SYNCING,
    SyncStatus.SYNCED,
    SyncStatus.RETRYING,
    SyncStatus.FAILED,
)

# Every state change a row may make. Staying in a state is not a change (a resync of a PENDING
# row, a takeover of a SYNCING row whose lease expired). NOT_REQUIRED is "no row yet": a draft.
ALLOWED: dict[SyncStatus, set[SyncStatus]] = {
    SyncStatus.NOT_REQUIRED: {P},  # finalize writes the row
    P: {SY},  # a worker claims it
    R: {SY, P},  # claimed once due; or a resync/void makes it due at once
    SY: {SD, R, F, P},  # the attempt's outcome; PENDING when a void or resync overtook it
    SD: {P},  # a resync, a void or the reconciler asks for a re-verify
    F: {P},  # a resync or retryFailedSyncs, attempts reset
}


class IllegalSyncTransition(AssertionError):
    """A state change that `ALLOWED` does not list: a bug in this module, never user input."""


def check(before: SyncStatus | str, after: SyncStatus | str) -> SyncStatus:
    """`after`, if a row in `before` may move there; else IllegalSyncTransition."""
    a, b = SyncStatus(before), SyncStatus(after)
    if a != b and b not in ALLOWED[a]:
        raise IllegalSyncTransition(f"invoice_sync may not go from {a.value} to {b.value}")
    return b


def _check_all(pairs: Iterable[tuple[Any, Any]]) -> None:
    for before, after in pairs:
        check(before, after)


# The error columns, set by a failed attempt and cleared by a success or a reset of attempts.
ERROR_COLUMNS = (
    "last_error_class",
    "last_error_code",
    "last_error_message",
    "last_error_http_status",
    "last_error_request_id",
)
_CLEAR_ERROR_SQL = ", ".join(f"{c} = NULL" for c in ERROR_COLUMNS)


def cleared_error() -> dict[str, None]:
    """The error columns, emptied: for ORM rows and `sa.update().values(...)` alike."""
    return dict.fromkeys(ERROR_COLUMNS)


@dataclass(frozen=True)
class SyncError:
    """What people read about a failed attempt (Stripe's class, code, message, request id)."""

    error_class: str
    code: str | None = None
    message: str | None = None
    http_status: int | None = None
    request_id: str | None = None


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
    # How operators know the invoice: for log lines and errors, never for logic.
    number: str | None = None
    public_id: str | None = None

    @property
    def label(self) -> str:
        """`ACME-0007 (inv_...)`: the invoice as an operator searches for it."""
        return f"{self.number or 'unnumbered'} ({self.public_id or f'row {self.invoice_id}'})"


# --- The API's side: finalize, void, resync ---------------------------------------------------


def write_pending(session: Session, invoice_ids: Sequence[int], *, now: datetime) -> None:
    """Create the outbox rows of just-finalized invoices (`invoices.finalize`), PENDING and due
    now, in one INSERT whatever their number. The only writer of new invoice_sync rows. Caller
    commits."""
    state = check(SyncStatus.NOT_REQUIRED, SyncStatus.PENDING)
    session.execute(
        sa.text(
            "INSERT INTO invoice_sync (invoice_id, state, next_attempt_at) "
            "SELECT unnest(CAST(:ids AS bigint[])), :state, :now"
        ),
        {"ids": list(invoice_ids), "state": state.value, "now": now},
    )


def get(
    session: Session, invoice_id: int, *, for_update: bool = False
) -> tables.InvoiceSync | None:
    stmt = select(tables.InvoiceSync).where(tables.InvoiceSync.invoice_id == invoice_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.exec(stmt).first()


def make_due(row: tables.InvoiceSync, *, now: datetime, reset_attempts: bool) -> None:
    """Ask for another pass of the sync as soon as possible. Bumps the revision, so a worker in
    the middle of an older pass does not mark the row SYNCED when it ends (it stays SYNCING,
    and the worker's outcome turns it PENDING)."""
    if row.state != SyncStatus.SYNCING:
        row.state = check(row.state, SyncStatus.PENDING)
    row.next_attempt_at = now
    row.revision += 1
    row.updated_at = now
    if reset_attempts:
        row.attempts = 0
        row.retrying_since = None
        for column, value in cleared_error().items():
            setattr(row, column, value)


def request_resync(
    session: Session, invoice: tables.Invoice, *, now: datetime
) -> tables.InvoiceSync:
    """Force a resync. FAILED: back to PENDING with attempts reset. SYNCED: re-verify against
    Stripe and repair. Already due or running: asks for one more pass. Caller commits.

    Never creates anything remote by itself: the worker looks the invoice up on Stripe before
    creating, so two resyncs at once still give one remote invoice.
    """
    assert invoice.id is not None
    row = get(session, invoice.id, for_update=True)
    if row is None:
        raise InvalidTransition(
            "draft invoices are not synced to Stripe; finalize the invoice first",
            field=("invoiceId",),
        )
    row.verify_requested = row.verify_requested or row.state == SyncStatus.SYNCED
    make_due(row, now=now, reset_attempts=True)
    return row


def retry_failed(session: Session, *, organization_id: int | None, now: datetime) -> int:
    """Re-queue every FAILED invoice of one organization or of the platform. Caller commits."""
    stmt = (
        sa.update(tables.InvoiceSync)
        .where(col(tables.InvoiceSync.state) == SyncStatus.FAILED)
        .values(
            state=check(SyncStatus.FAILED, SyncStatus.PENDING),
            next_attempt_at=now,
            attempts=0,
            retrying_since=None,
            revision=col(tables.InvoiceSync.revision) + 1,
            updated_at=now,
            **cleared_error(),
        )
    )
    if organization_id is not None:
        stmt = stmt.where(
            col(tables.InvoiceSync.invoice_id).in_(
                select(tables.Invoice.id).where(tables.Invoice.organization_id == organization_id)
            )
        )
    result: sa.CursorResult[tuple[()]] = session.execute(stmt)  # type: ignore[assignment]
    return int(result.rowcount)


# --- The worker's side: claim, outcome, sweep, reconcile ----------------------------------------

# Every statement binds the states it reads and writes from this dict, never a literal.
_STATES = {f"st_{s.name.lower()}": s.value for s in SyncStatus}

_CLAIM = sa.text(
    """
    WITH due AS (
        SELECT invoice_id, state AS was, last_attempt_at FROM invoice_sync
        WHERE invoice_id = :id
          AND (state = :st_pending
               OR (state = :st_retrying AND next_attempt_at <= now())
               OR (state = :st_syncing AND locked_until < now()))
        FOR UPDATE SKIP LOCKED
    )
    UPDATE invoice_sync AS s
    SET state = :st_syncing, lease_owner = :owner,
        locked_until = now() + make_interval(secs => :lease),
        attempts = s.attempts + 1, last_attempt_at = now(), updated_at = now()
    FROM due
    WHERE s.invoice_id = due.invoice_id
    RETURNING due.was, s.revision, s.attempts, s.verify_requested,
              due.last_attempt_at IS NOT NULL AS claimed_before,
              (SELECT i.number FROM invoices AS i WHERE i.id = s.invoice_id) AS number,
              (SELECT i.public_id FROM invoices AS i WHERE i.id = s.invoice_id) AS public_id
    """
)


def claim(session: Session, invoice_id: int, *, owner: str, lease_seconds: float) -> Lease | None:
    """PENDING, due RETRYING, or SYNCING with an expired lease -> SYNCING for this attempt; or
    None: not due, or someone holds it. SKIP LOCKED: of two workers (or a worker and a sweeper)
    only one gets the row, and nobody waits; the loser's message is simply spent."""
    row = session.execute(
        _CLAIM, {"id": invoice_id, "owner": owner, "lease": lease_seconds, **_STATES}
    ).first()
    if row is None:
        return None
    check(row.was, SyncStatus.SYNCING)
    return Lease(
        invoice_id=invoice_id,
        owner=owner,
        revision=int(row.revision),
        attempt=int(row.attempts),
        verify_requested=bool(row.verify_requested),
        claimed_before=bool(row.claimed_before),
        number=row.number,
        public_id=row.public_id,
    )


_SUCCEED = sa.text(
    f"""
    UPDATE invoice_sync SET
        state = CASE WHEN revision = :rev THEN :st_synced ELSE :st_pending END,
        synced_at = CASE WHEN revision = :rev THEN now() ELSE synced_at END,
        next_attempt_at = CASE WHEN revision = :rev THEN NULL ELSE now() END,
        verify_requested = CASE WHEN revision = :rev THEN false ELSE verify_requested END,
        retrying_since = NULL, locked_until = NULL, lease_owner = NULL, updated_at = now(), {_CLEAR_ERROR_SQL}
    WHERE invoice_id = :id AND lease_owner = :owner
    RETURNING state
    """
)


def succeed(session: Session, lease: Lease) -> SyncStatus | None:
    """SYNCING -> SYNCED, or PENDING when a void or a resync arrived during the attempt (the
    revision moved): one more pass. Returns the new state, or None if the lease was lost."""
    row = session.execute(
        _SUCCEED, {"id": lease.invoice_id, "owner": lease.owner, "rev": lease.revision, **_STATES}
    ).first()
    return check(SyncStatus.SYNCING, row.state) if row else None


_FAIL = sa.text(
    """
    UPDATE invoice_sync SET
        state = CASE WHEN :state = :st_failed AND revision <> :rev THEN :st_pending
                     WHEN :state = :st_retrying AND :refund = 0
                          AND coalesce(retrying_since, now())
                              + make_interval(secs => :horizon) <= now()
                     THEN CASE WHEN revision <> :rev THEN :st_pending ELSE :st_failed END
                     ELSE :state END,
        next_attempt_at = CASE
            WHEN :state = :st_failed AND revision <> :rev THEN now()
            WHEN :state = :st_failed THEN NULL
            WHEN :refund = 1 THEN now() + make_interval(secs => :delay)
            WHEN coalesce(retrying_since, now()) + make_interval(secs => :horizon) <= now()
            THEN CASE WHEN revision <> :rev THEN now() ELSE NULL END
            ELSE least(now() + make_interval(secs => :delay),
                       coalesce(retrying_since, now()) + make_interval(secs => :horizon)) END,
        retrying_since = CASE WHEN :refund = 1 THEN retrying_since
                              ELSE coalesce(retrying_since, now()) END,
        attempts = attempts - :refund, locked_until = NULL, lease_owner = NULL,
        updated_at = now(),
        last_error_class = :cls, last_error_code = :code, last_error_message = :msg,
        last_error_http_status = :status, last_error_request_id = :rid
    WHERE invoice_id = :id AND lease_owner = :owner
    RETURNING state
    """
)


def fail(
    session: Session,
    lease: Lease,
    error: SyncError,
    *,
    state: SyncStatus,
    delay_seconds: float,
    horizon_seconds: float,
    refund_attempt: bool = False,
) -> SyncStatus | None:
    """SYNCING -> RETRYING (due in `delay_seconds`) or FAILED, with the error for people to
    read. Returns the new state, or None if the lease was lost.

    The retry horizon is the one rule of when retrying ends: a RETRYING verdict FAILS the
    invoice once `horizon_seconds` have passed since its first failure (`retrying_since`, set
    here by that failure), and a retry is never scheduled past the horizon, so the last try
    falls inside it. A refunded attempt (the breaker paused the sync: our key, not this
    invoice) starts no horizon. A FAILED verdict on an attempt that a void or resync overtook
    becomes PENDING instead: that request deserves its own attempt."""
    if state not in (SyncStatus.RETRYING, SyncStatus.FAILED):
        raise IllegalSyncTransition(f"a failed attempt cannot leave the row {state.value}")
    check(SyncStatus.SYNCING, state)
    row = session.execute(
        _FAIL,
        {
            "id": lease.invoice_id,
            "owner": lease.owner,
            "rev": lease.revision,
            "state": state.value,
            "delay": delay_seconds,
            "horizon": horizon_seconds,
            "refund": 1 if refund_attempt else 0,
            "cls": error.error_class,
            "code": error.code,
            "msg": (error.message or "")[:2000],
            "status": error.http_status,
            "rid": error.request_id,
            **_STATES,
        },
    ).first()
    return check(SyncStatus.SYNCING, row.state) if row else None


_TAKE_DUE = sa.text(
    """
    WITH due AS (
        SELECT invoice_id, state AS was, last_attempt_at,
               (attempts >= :max OR retrying_since + make_interval(secs => :horizon) <= now())
                   AS spent
        FROM invoice_sync
        WHERE (state = :st_pending AND (locked_until IS NULL OR locked_until < now()))
           OR (state = :st_retrying AND next_attempt_at <= now()
               AND (locked_until IS NULL OR locked_until < now()))
           OR (state = :st_syncing AND locked_until < now())
        ORDER BY next_attempt_at NULLS FIRST
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    ), moved AS (
        UPDATE invoice_sync AS s SET
            state = CASE WHEN due.was <> :st_syncing THEN s.state
                         WHEN due.spent THEN :st_failed ELSE :st_retrying END,
            next_attempt_at = CASE WHEN due.was <> :st_syncing THEN s.next_attempt_at
                                   WHEN due.spent THEN NULL ELSE now() END,
            locked_until = CASE WHEN due.was = :st_syncing AND due.spent THEN NULL
                                ELSE now() + make_interval(secs => :hold) END,
            retrying_since = CASE WHEN due.was = :st_syncing
                                  THEN coalesce(s.retrying_since, now())
                                  ELSE s.retrying_since END,
            lease_owner = NULL,
            last_error_class = CASE WHEN due.was = :st_syncing THEN 'WorkerLost'
                                    ELSE s.last_error_class END,
            last_error_code = CASE WHEN due.was = :st_syncing THEN 'worker_lost'
                                   ELSE s.last_error_code END,
            last_error_message = CASE WHEN due.was = :st_syncing THEN :lost_message
                                      ELSE s.last_error_message END,
            last_error_http_status = CASE WHEN due.was = :st_syncing THEN NULL
                                          ELSE s.last_error_http_status END,
            last_error_request_id = CASE WHEN due.was = :st_syncing THEN NULL
                                         ELSE s.last_error_request_id END,
            updated_at = now()
        FROM due
        WHERE s.invoice_id = due.invoice_id
        RETURNING s.invoice_id, due.was, s.state, s.attempts, due.last_attempt_at
    ), lost AS (
        INSERT INTO sync_attempts (invoice_id, attempt, step, outcome, started_at, duration_ms,
                                   calls, error_class, error_code, error_message)
        SELECT invoice_id, attempts, 'unknown',
               CASE WHEN state = :st_failed THEN :outcome_failed ELSE :outcome_retry END,
               coalesce(last_attempt_at, now()),
               least(2147483647, (extract(epoch FROM now() - coalesce(last_attempt_at, now()))
                                  * 1000))::int,
               0, 'WorkerLost', 'worker_lost', :lost_message
        FROM moved WHERE was = :st_syncing
    )
    SELECT invoice_id, was, state FROM moved ORDER BY invoice_id
    """
)

LOST_MESSAGE = (
    "the worker holding this invoice stopped (crash, kill or time limit) before it finished; "
    "the attempt is retried, and its idempotency keys make that safe"
)


def take_due(
    session: Session,
    *,
    batch: int,
    hold_seconds: float,
    max_attempts: int,
    horizon_seconds: float,
) -> list[int]:
    """The sweeper's batch: due rows and expired leases, marked as enqueued for `hold_seconds`.
    Uses ix_invoice_sync_state_next_attempt_at (partial: only unsettled rows).

    SKIP LOCKED lets two sweepers (two beats by mistake, or a slow one) split the work instead
    of queueing behind each other, and skips rows a worker is claiming right now. An expired
    lease means its worker died mid-attempt: SYNCING -> RETRYING with the loss in its history,
    or FAILED once its retry horizon is spent or it reached the `max_attempts` backstop (an
    invoice that kills every worker that touches it must not loop forever).
    """
    rows = session.execute(
        _TAKE_DUE,
        {
            "batch": batch,
            "hold": hold_seconds,
            "max": max_attempts,
            "horizon": horizon_seconds,
            "lost_message": LOST_MESSAGE,
            # sync_attempts.outcome, spelled as the sync's verdicts (`sync.classify.Action`).
            "outcome_failed": "failed",
            "outcome_retry": "retry",
            **_STATES,
        },
    ).all()
    _check_all((r.was, r.state) for r in rows)
    return [int(r.invoice_id) for r in rows if r.state != SyncStatus.FAILED]


def release_hold(session: Session, invoice_id: int) -> None:
    """Forget that a due row was enqueued (its message was spent without an attempt). No state
    change."""
    session.execute(
        sa.text(
            "UPDATE invoice_sync SET locked_until = NULL"
            " WHERE invoice_id = :id AND state IN (:st_pending, :st_retrying)"
        ),
        {"id": invoice_id, **_STATES},
    )


_MARK_FOR_RECONCILE = sa.text(
    """
    UPDATE invoice_sync SET state = :st_pending, verify_requested = true,
        revision = revision + 1, next_attempt_at = now(), updated_at = now()
    WHERE invoice_id IN (
        SELECT invoice_id FROM invoice_sync
        WHERE state = :st_synced
          AND synced_at < now() - make_interval(secs => :age)
        ORDER BY synced_at
        LIMIT :batch
        FOR UPDATE SKIP LOCKED
    )
    RETURNING invoice_id
    """
)


def mark_for_reconcile(session: Session, *, older_than_seconds: float, batch: int) -> list[int]:
    """SYNCED -> PENDING with verify_requested (as a forced resync does), for synced invoices
    not verified for a while, oldest first."""
    check(SyncStatus.SYNCED, SyncStatus.PENDING)
    rows = session.execute(
        _MARK_FOR_RECONCILE, {"age": older_than_seconds, "batch": batch, **_STATES}
    )
    return [int(r[0]) for r in rows]
