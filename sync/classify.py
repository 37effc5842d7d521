"""Which failures are worth retrying, and when. One function, so the policy reads in one place.

It follows how Stripe documents its errors and how stripe-python maps HTTP statuses to classes
(`stripe/_api_requestor.py`): connection errors and timeouts, 429 (`RateLimitError`, with a
`Retry-After` header), 409 (a lock or an idempotency key still in flight) and 5xx (`APIError`)
are transient; 400/404 (`InvalidRequestError`, `IdempotencyError`), 402 and 403 will fail the
same way again, so the invoice is FAILED at once with Stripe's code, message and request id.
A 401 (`AuthenticationError`) means our key is wrong for every request: the sync pauses (the
circuit breaker) instead of failing invoices one by one.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum

import redis
import stripe
from sqlalchemy.exc import InterfaceError, OperationalError

from models.sync_state.outbox import SyncError
from sync.errors import BreakerOpen, Mismatch, RateLimiterTimeout


class Action(StrEnum):
    RETRY = "retry"
    FAIL = "failed"
    PAUSE = "paused"


@dataclass(frozen=True)
class Verdict:
    action: Action
    kind: str  # coarse class for metrics: timeout, rate_limit, server_error, invalid_request ...
    error_class: str  # the exception's class, as people read it in the history
    code: str | None = None
    message: str | None = None
    http_status: int | None = None
    request_id: str | None = None
    retry_after: float | None = None

    def error(self) -> SyncError:
        """What the outbox row shows of this failure."""
        return SyncError(
            error_class=self.error_class,
            code=self.code,
            message=self.message,
            http_status=self.http_status,
            request_id=self.request_id,
        )


# Exceptions of the task runner that mean "this attempt ran out of time" (Celery's
# SoftTimeLimitExceeded); registered by the Celery app so that this module needs no Celery.
_TRANSIENT: list[type[BaseException]] = []


def treat_as_transient(*types: type[BaseException]) -> None:
    _TRANSIENT.extend(t for t in types if t not in _TRANSIENT)


def _retry_after(e: stripe.StripeError) -> float | None:
    raw = e.headers.get("Retry-After") if e.headers else None
    try:
        return max(0.0, float(raw)) if raw is not None else None
    except ValueError:
        return None


def _stripe(e: stripe.StripeError) -> Verdict:
    error = e.error
    code = (error.code if error else None) or e.code
    message = (error.message if error else None) or e.user_message or str(e) or type(e).__name__

    def verdict(action: Action, kind: str, code: str | None = code) -> Verdict:
        return Verdict(
            action=action,
            kind=kind,
            error_class=type(e).__name__,
            code=code,
            message=message,
            http_status=e.http_status,
            request_id=e.request_id,
            retry_after=_retry_after(e),
        )

    if isinstance(e, stripe.AuthenticationError):
        return verdict(Action.PAUSE, "authentication")
    if isinstance(e, stripe.APIConnectionError):
        # The SDK wraps both refused connections and read timeouts; either way the request may
        # have executed, which is why every retry carries the same idempotency key.
        timed_out = "timed out" in message.lower() or "timeout" in message.lower()
        return verdict(
            Action.RETRY,
            "timeout" if timed_out else "connection",
            "timeout" if timed_out else "connection_error",
        )
    if isinstance(e, stripe.RateLimitError):
        return verdict(Action.RETRY, "rate_limit", code or "rate_limit")
    if isinstance(e, stripe.IdempotencyError):
        return verdict(Action.FAIL, "idempotency", code or "idempotency_error")
    if isinstance(e, stripe.InvalidRequestError):
        return verdict(Action.FAIL, "invalid_request")
    if isinstance(e, stripe.PermissionError):
        return verdict(Action.FAIL, "permission")
    if isinstance(e, stripe.CardError):
        return verdict(Action.FAIL, "card")
    status = e.http_status
    if status == 409:
        return verdict(Action.RETRY, "conflict", code or "conflict")
    if status is None or status >= 500:
        replayed = str((e.headers or {}).get("Idempotent-Replayed", "")).lower() == "true"
        # A replayed 500 is retried too, but under a new key generation (sync.memory).
        return verdict(
            Action.RETRY,
            "server_error",
            "idempotent_replayed_500" if replayed else code or "api_error",
        )
    return verdict(Action.FAIL, "client_error")


def classify(e: BaseException) -> Verdict:
    """RETRY (after a backoff, or Stripe's Retry-After), FAIL (with a code), or PAUSE."""
    if isinstance(e, stripe.StripeError):
        return _stripe(e)
    name = type(e).__name__
    text = str(e)[:2000] or name
    if isinstance(e, Mismatch):
        # Shown as the error class too: it is ours, not Stripe's, and the API documents it so.
        # Subclasses (REMOTE_VOIDED, REMOTE_DELETED) carry codes of their own.
        return Verdict(Action.FAIL, "mismatch", e.code, e.code, text)
    if isinstance(e, BreakerOpen):
        return Verdict(Action.PAUSE, "paused", name, "breaker_open", text)
    if isinstance(e, RateLimiterTimeout):
        return Verdict(Action.RETRY, "rate_limit", name, "local_rate_limit", text)
    if isinstance(e, redis.RedisError):
        return Verdict(Action.RETRY, "redis", name, "redis_unavailable", text)
    if isinstance(e, OperationalError | InterfaceError):  # lost connection, lock timeout
        return Verdict(Action.RETRY, "database", name, "database_unavailable", text)
    if isinstance(e, tuple(_TRANSIENT)):
        return Verdict(Action.RETRY, "time_limit", name, "time_limit", text)
    # Anything else is a bug of ours: surfaced at once, with its message, rather than retried
    # eight times. `resyncInvoice` re-queues it once the bug is fixed.
    return Verdict(Action.FAIL, "internal", name, "INTERNAL", text)


def retry_delay(
    attempt: int,
    *,
    base: float,
    cap: float,
    retry_after: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Exponential backoff with full jitter: uniform in [0, min(cap, base * 2^(attempt-1))]
    (AWS's "Exponential Backoff and Jitter"), so that a fleet that failed together does not
    retry together. Never sooner than Stripe's Retry-After."""
    ceiling = min(cap, base * 2 ** max(0, attempt - 1))
    delay = (rng or random).uniform(0, ceiling)
    return max(delay, retry_after or 0.0)
