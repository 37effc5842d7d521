"""Deliveries: the (event, endpoint) outbox rows, their claims, attempts, backoff and log.

A delivery is PENDING until an attempt gets a 2xx (DELIVERED), its event is older than the
give-up age when an attempt fails (FAILED), or its endpoint is deleted (CANCELLED). The beat
sweep claims due rows with FOR UPDATE SKIP LOCKED and holds them (locked_until) while their
message waits in the queue (`claim_due`); the task then `start`s the attempt, which takes the
row only if it is still pending and due, and moves next_attempt_at past the HTTP call's
timeouts (the attempt's lease), so a duplicate message finds nothing to do.
The HTTP call happens outside any transaction; `finish` records its outcome and the next try.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from models import tables
from models.tables import WebhookDeliveryState as State


def backoff_seconds(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """How long after failed attempt number `attempt` (1-based) the next one is due: capped
    exponential, base * 2^(attempt-1) up to cap, with "equal jitter" (the upper half of the
    window drawn at random), so endpoints coming back from an outage are not hit in lockstep
    while each retry still waits at least half its step."""
    step = min(cap, base * (2 ** min(attempt - 1, 40)))
    return float(step / 2 + rng.uniform(0, step / 2))


def claim_due(session: Session, *, batch: int, hold_seconds: float, now: datetime) -> list[int]:
    """Pending deliveries that are due and not held, oldest first, up to `batch`: each is held
    for `hold_seconds` (the wait in the queue; a lost message is swept again after it).
    Uses ix_webhook_deliveries_due; FOR UPDATE SKIP LOCKED, so concurrent sweeps split the
    rows. Caller commits."""
    rows = session.execute(
        sa.text(
            "WITH due AS ("
            " SELECT d.id FROM webhook_deliveries d"
            " WHERE d.state = 'pending' AND d.next_attempt_at <= :now"
            " AND (d.locked_until IS NULL OR d.locked_until <= :now)"
            " ORDER BY d.next_attempt_at, d.id LIMIT :batch FOR UPDATE SKIP LOCKED)"
            " UPDATE webhook_deliveries d SET locked_until = :until FROM due WHERE d.id = due.id"
            " RETURNING d.id"
        ),
        {"now": now, "batch": batch, "until": now + timedelta(seconds=hold_seconds)},
    ).scalars()
    return sorted(int(i) for i in rows)


@dataclass(frozen=True)
class Attempt:
    """What a worker needs to send one attempt, read in the transaction that started it."""

    delivery_id: int
    attempt: int
    event_id: str
    event_type: str
    event_created: datetime
    payload: dict[str, Any]
    url: str
    secret: str


def start(
    session: Session, delivery_id: int, *, lease_seconds: float, now: datetime
) -> Attempt | None:
    """Take a pending, due delivery for one attempt, or None when there is nothing to send (sent
    already, endpoint deleted, or another worker's attempt holds it). The attempt's lease is its
    `next_attempt_at` moved `lease_seconds` ahead (past every HTTP timeout): no other message
    finds it due meanwhile, and if this worker dies the sweep finds it due again after that.
    The sweep's hold (locked_until) is released here. Caller commits before sending."""
    row = session.execute(
        sa.text(
            "UPDATE webhook_deliveries d SET locked_until = NULL, attempts = d.attempts + 1,"
            " next_attempt_at = :lease_end"
            " FROM webhook_events e, webhook_endpoints ep"
            " WHERE d.id = :id AND e.id = d.event_id AND ep.id = d.endpoint_id"
            " AND d.state = 'pending' AND ep.deleted_at IS NULL AND d.next_attempt_at <= :now"
            " RETURNING d.attempts, e.id, e.type, e.created_at, e.payload, ep.url, ep.secret"
        ),
        {"id": delivery_id, "now": now, "lease_end": now + timedelta(seconds=lease_seconds)},
    ).one_or_none()
    if row is None:
        return None
    return Attempt(delivery_id, int(row[0]), row[1], row[2], row[3], dict(row[4]), row[5], row[6])


@dataclass(frozen=True)
class Result:
    """An attempt's outcome: the HTTP status if one came back, else the error."""

    started_at: datetime
    duration_ms: int
    http_status: int | None
    error: str | None

    @property
    def ok(self) -> bool:
        return self.http_status is not None and 200 <= self.http_status < 300


def finish(
    session: Session,
    attempt: Attempt,
    result: Result,
    *,
    now: datetime,
    retry_in: float,
    give_up_after: float,
) -> str:
    """Record an attempt in the log and move its delivery on: DELIVERED on a 2xx; otherwise
    due again in `retry_in` seconds, or FAILED when the event is older than `give_up_after`
    seconds by then. Returns the attempt's outcome ("delivered", "retry", "failed").
    Caller commits."""
    if result.ok:
        outcome = State.DELIVERED.value
    elif (
        now + timedelta(seconds=retry_in) - attempt.event_created
    ).total_seconds() > give_up_after:
        outcome = State.FAILED.value
    else:
        outcome = "retry"
    session.add(
        tables.WebhookDeliveryAttempt(
            delivery_id=attempt.delivery_id,
            attempt=attempt.attempt,
            started_at=result.started_at,
            duration_ms=result.duration_ms,
            outcome=outcome,
            http_status=result.http_status,
            error=result.error,
        )
    )
    session.execute(
        sa.text(
            "UPDATE webhook_deliveries SET state = :state, locked_until = NULL,"
            " next_attempt_at = :next, delivered_at = :delivered,"
            " last_http_status = :status, last_error = :error"
            " WHERE id = :id AND state = 'pending' AND attempts = :attempt"
        ),
        {
            "id": attempt.delivery_id,
            "attempt": attempt.attempt,
            "state": State.PENDING.value if outcome == "retry" else outcome,
            "next": now + timedelta(seconds=retry_in),
            "delivered": now if result.ok else None,
            "status": result.http_status,
            "error": result.error,
        },
    )
    return outcome


@dataclass(frozen=True)
class LogEntry:
    """One attempt (or a delivery with none yet) as an operator reads it."""

    event_id: str
    event_type: str
    url: str
    state: str
    attempt: int | None
    at: datetime | None
    outcome: str | None
    http_status: int | None
    error: str | None
    duration_ms: int | None
    next_attempt_at: datetime | None


def log(
    session: Session, *, limit: int = 50, event_id: str | None = None, state: str | None = None
) -> list[LogEntry]:
    """The newest deliveries (up to `limit`), each with every attempt, newest first; a delivery
    with no attempt yet shows once with empty attempt fields."""
    rows = session.execute(
        sa.text(
            "WITH recent AS ("
            " SELECT d.* FROM webhook_deliveries d"
            " WHERE (CAST(:event AS text) IS NULL OR d.event_id = :event)"
            " AND (CAST(:state AS text) IS NULL OR d.state = :state)"
            " ORDER BY d.id DESC LIMIT :limit)"
            " SELECT r.event_id, e.type, ep.url, r.state, a.attempt, a.started_at, a.outcome,"
            " a.http_status, a.error, a.duration_ms,"
            " CASE WHEN r.state = 'pending' THEN r.next_attempt_at END"
            " FROM recent r JOIN webhook_events e ON e.id = r.event_id"
            " JOIN webhook_endpoints ep ON ep.id = r.endpoint_id"
            " LEFT JOIN webhook_delivery_attempts a ON a.delivery_id = r.id"
            " ORDER BY r.id DESC, a.attempt DESC NULLS FIRST"
        ),
        {"event": event_id, "state": state, "limit": limit},
    ).all()
    return [LogEntry(*r) for r in rows]
