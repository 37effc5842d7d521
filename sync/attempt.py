"""One attempt at one invoice: admit (breaker), claim (lease), push, then record the outcome.

Nothing here sleeps or loops: a failure is classified once and written down (RETRYING with
next_attempt_at, FAILED, or paused), and the sweeper starts the next attempt when it is due.
Every attempt that claimed the row leaves one `sync_attempts` row.
"""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime
from enum import StrEnum

from sqlmodel import Session

from models.sync_state import outbox
from models.tables import SyncStatus
from sync import history, memory, push
from sync.classify import Action, Verdict, classify, retry_delay
from sync.metrics import SYNC_ATTEMPTS, SYNC_ERRORS, SYNC_LATENCY, SYNC_SECONDS
from sync.runtime import Runtime
from sync.stripe_client import StripeGateway

log = logging.getLogger("billing.sync")


class Outcome(StrEnum):
    SYNCED = "synced"
    AGAIN = "again"  # done, but a void or resync arrived meanwhile: due again at once
    RETRY = "retry"
    FAILED = "failed"
    PAUSED = "paused"  # breaker open: nothing claimed, nothing called
    NOT_DUE = "not_due"  # another worker holds it, or nothing is due
    LOST = "lost"  # our lease expired and someone else took the row over


def run(rt: Runtime, invoice_id: int, *, owner: str) -> Outcome:
    """One attempt. Idempotent: a second message for the same invoice finds it claimed or done.
    `owner` must be unique per attempt (it is the lease token)."""
    if not rt.gateway.breaker.admit():
        # The row stays due, and is no longer marked as enqueued (this message is spent), so
        # the sweeper re-enqueues it as soon as the breaker closes.
        with rt.sessions() as session, session.begin():
            outbox.release_hold(session, invoice_id)
        return Outcome.PAUSED
    with rt.sessions() as session:
        with session.begin():
            lease = outbox.claim(
                session, invoice_id, owner=owner, lease_seconds=rt.config.lease_seconds
            )
        if lease is None:
            return Outcome.NOT_DUE
        outcome = _attempt(rt, session, lease)
    # One INFO line per state change, naming the invoice as operators know it; "nothing to do
    # here" (lease lost to another worker) is DEBUG.
    log.log(
        logging.DEBUG if outcome == Outcome.LOST else logging.INFO,
        "sync attempt for invoice %s: %s",
        lease.label,
        outcome.value,
        extra=_fields(lease, outcome=outcome.value),
    )
    return outcome


def _fields(lease: outbox.Lease, **more: object) -> dict[str, object]:
    """The structured fields of a sync log line: the number and public id operators search by,
    and the row id for us."""
    return {
        "invoice_number": lease.number,
        "invoice_public_id": lease.public_id,
        "invoice_id": lease.invoice_id,
        **more,
    }


def _attempt(rt: Runtime, session: Session, lease: outbox.Lease) -> Outcome:
    started_at = datetime.now(UTC)
    clock = time.perf_counter()
    stripe = rt.gateway.for_attempt()
    progress = push.Progress()
    target: push.Target | None = None
    try:
        target = push.load_target(session, lease.invoice_id)
        push.push(
            session,
            stripe,
            target,
            claimed_before=lease.claimed_before,
            verify_requested=lease.verify_requested,
            chunk_size=rt.config.lines_chunk,
            progress=progress,
        )
    except Exception as e:  # every failure is classified and recorded; none escapes the task
        if session.in_transaction():
            session.rollback()
        verdict = classify(e)
        spent = memory.spent_step(stripe.failed_post)
        if spent is not None:
            # Stripe may have saved this 5xx for the key and would replay it on every retry:
            # the next attempt reads the remote state, and sends the step under the next key
            # generation if it is still needed, never the spent key.
            with session.begin():
                memory.bump(session, lease.invoice_id, spent)
        if verdict.kind == "internal":
            log.exception(
                "sync attempt for invoice %s hit a bug", lease.label, extra=_fields(lease)
            )
        return _record_failure(rt, session, lease, verdict, progress, started_at, clock, stripe)
    seconds = time.perf_counter() - clock
    with session.begin():
        state = outbox.succeed(session, lease)
        history.record_attempt(
            session,
            invoice_id=lease.invoice_id,
            attempt=lease.attempt,
            step=progress.step,
            outcome="ok",
            started_at=started_at,
            duration_ms=int(seconds * 1000),
            calls=stripe.calls,
        )
    SYNC_SECONDS.observe(seconds)
    SYNC_ATTEMPTS.labels("ok").inc()
    if state is None:
        return Outcome.LOST
    if state != SyncStatus.SYNCED:
        return Outcome.AGAIN
    finalized_at = target.invoice.finalized_at if target else None
    if finalized_at and not lease.verify_requested:
        SYNC_LATENCY.observe(max(0.0, (datetime.now(UTC) - finalized_at).total_seconds()))
    return Outcome.SYNCED


def _record_failure(
    rt: Runtime,
    session: Session,
    lease: outbox.Lease,
    verdict: Verdict,
    progress: push.Progress,
    started_at: datetime,
    clock: float,
    stripe: StripeGateway,
) -> Outcome:
    """RETRYING after a backoff, FAILED, or paused by the breaker (RETRYING when it may close,
    the attempt given back: an outage of our key must not use up invoices' attempts). A
    retryable failure FAILS the invoice only once its retry horizon is spent (`outbox.fail`)
    or, as a backstop, at `max_attempts`."""
    cfg = rt.config
    refund = verdict.action == Action.PAUSE
    state: SyncStatus
    if verdict.action == Action.PAUSE:
        state, delay = SyncStatus.RETRYING, max(1.0, rt.gateway.breaker.open_seconds_left())
    elif verdict.action == Action.RETRY and lease.attempt < cfg.max_attempts:
        delay = retry_delay(
            lease.attempt,
            base=cfg.backoff_base_seconds,
            cap=cfg.backoff_cap_seconds,
            retry_after=verdict.retry_after,
            rng=rt.rng,
        )
        state = SyncStatus.RETRYING
    else:
        state, delay = SyncStatus.FAILED, 0.0
    seconds = time.perf_counter() - clock
    with session.begin():
        stored = outbox.fail(
            session,
            lease,
            verdict.error(),
            state=state,
            delay_seconds=delay,
            horizon_seconds=cfg.retry_horizon_seconds,
            refund_attempt=refund,
        )
        history.record_attempt(
            session,
            invoice_id=lease.invoice_id,
            attempt=lease.attempt,
            step=progress.step,
            outcome=Action.FAIL.value if stored == SyncStatus.FAILED else verdict.action.value,
            started_at=started_at,
            duration_ms=int(seconds * 1000),
            calls=stripe.calls,
            verdict=verdict,
        )
    outcome = {
        SyncStatus.RETRYING: Outcome.RETRY,
        SyncStatus.FAILED: Outcome.FAILED,
        SyncStatus.PENDING: Outcome.AGAIN,
        None: Outcome.LOST,
    }[stored]
    if refund and stored == SyncStatus.RETRYING:
        outcome = Outcome.PAUSED
    SYNC_SECONDS.observe(seconds)
    SYNC_ATTEMPTS.labels(outcome.value).inc()
    SYNC_ERRORS.labels(verdict.kind, stored or state).inc()
    log.warning(
        "sync of invoice %s: attempt %s failed at %s with %s %s (HTTP %s, request %s): %s",
        lease.label,
        lease.attempt,
        progress.step,
        verdict.error_class,
        verdict.code,
        verdict.http_status,
        verdict.request_id,
        stored,
        extra=_fields(
            lease,
            attempt=lease.attempt,
            step=progress.step,
            error_class=verdict.error_class,
            code=verdict.code,
            http_status=verdict.http_status,
            request_id=verdict.request_id,
            state=stored,
        ),
    )
    return outcome
