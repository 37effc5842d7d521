"""Which failures are worth retrying. One function, so the policy reads in one place.

Follows how Stripe documents its errors (and how stripe-python maps statuses to classes):
connection problems, timeouts, 429, 409 (lock or idempotency-key conflicts) and 5xx are
transient; 400/402/403/404 and idempotency errors will fail the same way again; 401 means our
key is wrong for everyone, so the whole sync pauses instead of failing invoices one by one.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import stripe
from sqlalchemy.exc import OperationalError


class Action(StrEnum):
    RETRY = "retry"
    FAIL = "failed"
    PAUSE = "paused"


@dataclass(frozen=True)
class Verdict:
    action: Action
    error_class: str
    code: str | None = None
    message: str | None = None
    http_status: int | None = None
    request_id: str | None = None
    retry_after: float | None = None


class Mismatch(Exception):
    """Stripe holds something other than our invoice (total or lines), and cannot be repaired."""


class BreakerOpen(Exception):
    """Syncing is paused after an authentication error; no call was made."""


def _retry_after(e: stripe.StripeError) -> float | None:
    raw = (e.headers or {}).get("Retry-After") if e.headers else None
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None


def classify(e: BaseException) -> Verdict:
    if isinstance(e, Mismatch):
        return Verdict(Action.FAIL, "MISMATCH", "MISMATCH", str(e))
    if isinstance(e, BreakerOpen):
        return Verdict(Action.PAUSE, "BreakerOpen", None, str(e))
    if isinstance(e, stripe.StripeError):
        error = e.error
        code = (error.code if error else None) or e.code

        def verdict(action: Action, retry_after: float | None = None) -> Verdict:
            return Verdict(
                action,
                type(e).__name__,
                code,
                (error.message if error else None) or e.user_message or str(e),
                e.http_status,
                e.request_id,
                retry_after,
            )

        if isinstance(e, stripe.AuthenticationError):
            return verdict(Action.PAUSE)
        if isinstance(e, stripe.APIConnectionError | stripe.RateLimitError):
            return verdict(Action.RETRY, _retry_after(e))
        if isinstance(
            e,
            stripe.IdempotencyError
            | stripe.InvalidRequestError
            | stripe.PermissionError
            | stripe.CardError,
        ):
            return verdict(Action.FAIL)
        if e.http_status is None or e.http_status == 409 or e.http_status >= 500:
            return verdict(Action.RETRY, _retry_after(e))
        return verdict(Action.FAIL)
    if isinstance(e, OperationalError):
        return Verdict(Action.RETRY, "DatabaseError", None, str(e.orig or e)[:500])
    return Verdict(Action.FAIL, type(e).__name__, "INTERNAL", str(e)[:500])
