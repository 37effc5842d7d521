"""Retry-safe writes: a mutation sent with an idempotency key runs once per (token, key).

The row is written in the mutation's own transaction, which is what makes this exact:

1. `find`: a committed row with the same fingerprint is replayed (`check_same`); with another
   fingerprint the key was used for something else: IdempotencyConflict.
2. Otherwise the mutation's transaction starts with `claim`, an INSERT ... ON CONFLICT DO
   NOTHING. A concurrent request with the same key blocks there on the first one's uncommitted
   row: if that one commits, `claim` answers False and the caller replays it; if it rolls back,
   the insert goes through and this request runs.
3. `record` stores what the answer referred to before the commit. A mutation that fails
   (userErrors, nothing written) rolls its row back with the rest, so its retry runs again:
   there is no "in progress" row for a crashed request to leave behind.

Keys are kept `keep` (24 hours by default, API_IDEMPOTENCY_KEEP) and then purged hourly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from models.errors import IdempotencyConflict, InvalidValue

MAX_KEY_LENGTH = 255  # as Stripe's
FIELD = ("idempotencyKey",)


@dataclass(frozen=True, slots=True)
class Request:
    token_id: int
    key: str
    operation: str  # the mutation's GraphQL name
    fingerprint: str


@dataclass(frozen=True, slots=True)
class Stored:
    operation: str
    fingerprint: str
    outcome: dict[str, Any]


def check_key(key: str) -> None:
    if not 1 <= len(key) <= MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidValue(
            f"an idempotency key is 1 to {MAX_KEY_LENGTH} printable characters", field=FIELD
        )


def fingerprint(operation: str, arguments: Mapping[str, Any]) -> str:
    """SHA-256 of the mutation's name and its arguments as canonical JSON (plain data only)."""
    text = json.dumps(
        {"operation": operation, "arguments": arguments},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=True,
    )
    return hashlib.sha256(text.encode()).hexdigest()


def find(session: Session, token_id: int, key: str) -> Stored | None:
    row = session.execute(
        sa.text(
            "SELECT operation, fingerprint, outcome FROM idempotency_keys "
            "WHERE token_id = :token_id AND key = :key"
        ),
        {"token_id": token_id, "key": key},
    ).one_or_none()
    return Stored(row.operation, row.fingerprint.strip(), row.outcome) if row else None


def check_same(stored: Stored, request: Request) -> None:
    """The retry must be the same request; anything else reusing the key is refused."""
    if stored.operation != request.operation:
        raise IdempotencyConflict(
            f"this idempotency key was used for {stored.operation}; use a new key for "
            f"{request.operation}",
            field=FIELD,
        )
    if stored.fingerprint != request.fingerprint:
        raise IdempotencyConflict(
            f"this idempotency key was used for {stored.operation} with other input; "
            "retry with the same input, or use a new key",
            field=FIELD,
        )


def claim(session: Session, request: Request) -> bool:
    """Take the key in the current transaction; False if another request committed it first
    (waits for that request's transaction when it is still running)."""
    inserted = session.execute(
        sa.text(
            "INSERT INTO idempotency_keys (token_id, key, operation, fingerprint, outcome) "
            "VALUES (:token_id, :key, :operation, :fingerprint, '{}'::jsonb) "
            "ON CONFLICT (token_id, key) DO NOTHING RETURNING 1"
        ),
        {
            "token_id": request.token_id,
            "key": request.key,
            "operation": request.operation,
            "fingerprint": request.fingerprint,
        },
    ).first()
    return inserted is not None


def record(session: Session, request: Request, outcome: Mapping[str, Any]) -> None:
    session.execute(
        sa.text(
            "UPDATE idempotency_keys SET outcome = CAST(:outcome AS jsonb) "
            "WHERE token_id = :token_id AND key = :key"
        ),
        {"outcome": json.dumps(outcome), "token_id": request.token_id, "key": request.key},
    )


def purge(session: Session, *, now: datetime, keep: timedelta) -> int:
    """Forget keys older than `keep`; returns how many went."""
    result = session.execute(
        sa.text("DELETE FROM idempotency_keys WHERE created_at < :cutoff"),
        {"cutoff": now - keep},
    )
    return int(result.rowcount or 0)  # type: ignore[attr-defined]
