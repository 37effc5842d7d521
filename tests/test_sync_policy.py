"""The retry policy and the idempotency keys, without servers: which errors are retried, failed
or pause the sync, the backoff's bounds, and the keys' shapes."""

from __future__ import annotations

import random

import pytest
import redis
import stripe
from sqlalchemy.exc import OperationalError

from sync import keys
from sync.classify import Action, classify, retry_delay
from sync.errors import BreakerOpen, Mismatch, RateLimiterTimeout


def _headers(**extra: str) -> dict[str, str]:
    return {"request-id": "req_123", **extra}


@pytest.mark.parametrize(
    ("error", "action", "kind"),
    [
        (stripe.APIConnectionError("Request to Stripe timed out"), Action.RETRY, "timeout"),
        (stripe.APIConnectionError("Connection refused"), Action.RETRY, "connection"),
        (
            stripe.RateLimitError("slow down", None, 429, None, _headers(**{"Retry-After": "7"})),
            Action.RETRY,
            "rate_limit",
        ),
        (stripe.APIError("boom", None, 500, None, _headers()), Action.RETRY, "server_error"),
        (stripe.APIError("busy", None, 503, None, _headers()), Action.RETRY, "server_error"),
        (stripe.APIError("in flight", None, 409, None, _headers()), Action.RETRY, "conflict"),
        (
            stripe.InvalidRequestError(
                "No such customer", "customer", "resource_missing", None, 400, None, _headers()
            ),
            Action.FAIL,
            "invalid_request",
        ),
        (
            stripe.IdempotencyError("Keys for idempotent requests...", None, 400, None, _headers()),
            Action.FAIL,
            "idempotency",
        ),
        (
            stripe.PermissionError("restricted key", None, 403, None, _headers()),
            Action.FAIL,
            "permission",
        ),
        (
            stripe.AuthenticationError("Invalid API Key", None, 401, None, _headers()),
            Action.PAUSE,
            "authentication",
        ),
        (BreakerOpen("paused"), Action.PAUSE, "paused"),
        (Mismatch("total differs"), Action.FAIL, "mismatch"),
        (RateLimiterTimeout("no token"), Action.RETRY, "rate_limit"),
        (redis.ConnectionError("down"), Action.RETRY, "redis"),
        (OperationalError("SELECT 1", {}, Exception("server closed")), Action.RETRY, "database"),
        (KeyError("bug"), Action.FAIL, "internal"),
    ],
)
def test_each_error_class_gets_its_verdict(error: Exception, action: Action, kind: str) -> None:
    verdict = classify(error)
    assert (verdict.action, verdict.kind) == (action, kind)


def test_verdicts_carry_stripes_code_message_status_and_request_id() -> None:
    e = stripe.InvalidRequestError(
        "No such customer: 'cus_gone'", "customer", "resource_missing", None, 400, None, _headers()
    )
    v = classify(e)
    assert (v.error_class, v.code, v.http_status, v.request_id) == (
        "InvalidRequestError",
        "resource_missing",
        400,
        "req_123",
    )
    assert v.message is not None and "cus_gone" in v.message
    assert classify(Mismatch("x")).code == "MISMATCH"
    rate = classify(stripe.RateLimitError("slow", None, 429, None, {"Retry-After": "7"}))
    assert rate.retry_after == 7.0


def test_backoff_is_full_jitter_capped_and_honours_retry_after() -> None:
    rng = random.Random(1)
    for attempt in range(1, 12):
        ceiling = min(600.0, 2.0 * 2 ** (attempt - 1))
        delays = [retry_delay(attempt, base=2, cap=600, rng=rng) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range, not clustered
    assert retry_delay(1, base=2, cap=600, retry_after=30, rng=rng) == 30


def test_one_key_per_step_derived_from_the_public_ids() -> None:
    assert keys.create("inv_abc") == "invoice:inv_abc:create"
    assert keys.lines("inv_abc", 3) == "invoice:inv_abc:lines:3"
    assert keys.finalize("inv_abc") == "invoice:inv_abc:finalize"
    assert keys.void("inv_abc") == "invoice:inv_abc:void"
    assert keys.customer("org_xyz") == "org:org_xyz:customer"
    partial = keys.lines("inv_abc", 3, subset=["li_1", "li_2"])
    assert partial.startswith("invoice:inv_abc:lines:3:") and partial != keys.lines("inv_abc", 3)
    assert partial == keys.lines("inv_abc", 3, subset=["li_1", "li_2"])
