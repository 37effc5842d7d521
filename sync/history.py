"""The attempt history (`sync_attempts`): one row per attempt that claimed an invoice, shown as
`syncState.history`. Not a state change of `invoice_sync` (that is `models.sync_state.outbox`)."""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session

from sync.classify import Verdict

_INSERT = sa.text(
    """
    INSERT INTO sync_attempts (invoice_id, attempt, step, outcome, started_at,
        duration_ms, calls, error_class, error_code, error_message, http_status, request_id)
    VALUES (:invoice_id, :attempt, :step, :outcome, :started_at, :duration_ms, :calls,
        :cls, :code, :msg, :status, :rid)
    """
)


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
    """One row of the invoice's sync history. Caller commits (with the outcome it records)."""
    session.execute(
        _INSERT,
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
