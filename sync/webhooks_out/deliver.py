"""One delivery attempt over HTTP, and the sweep that finds due deliveries. Plain functions
over a session factory and an `enqueue` callable, so they run without Celery in tests.

An endpoint cannot make a worker hang: connect, read, write and pool timeouts bound each step,
a deadline bounds the whole response (a server trickling bytes), at most 4 KiB of the answer
is read, redirects are not followed (a 3xx is a failure, as on Stripe), and the Celery time
limits stay a last line.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from datetime import UTC, datetime

import httpx
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models.db import transaction
from models.webhooks_out import deliveries, events
from sync.webhooks_out import signing
from sync.webhooks_out.config import OutConfig

log = logging.getLogger("billing.webhooks_out")

USER_AGENT = "billing-webhooks/1"
MAX_READ = 4096


def _now() -> datetime:
    return datetime.now(UTC)


def post(attempt: deliveries.Attempt, cfg: OutConfig, *, client: httpx.Client) -> deliveries.Result:
    """Send one signed attempt; never raises for the endpoint's behaviour."""
    raw = signing.body(attempt.event_id, attempt.event_type, attempt.event_created, attempt.payload)
    started = _now()
    t0 = time.monotonic()
    status: int | None = None
    error: str | None = None
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Billing-Event-Id": attempt.event_id,
        signing.HEADER: signing.header(attempt.secret, int(time.time()), raw),
    }
    try:
        with client.stream("POST", attempt.url, content=raw, headers=headers) as r:
            status = r.status_code
            read = 0
            for chunk in r.iter_raw():
                read += len(chunk)
                if read >= MAX_READ:
                    break
                if time.monotonic() - t0 > cfg.timeout_seconds:
                    status, error = None, f"no complete answer within {cfg.timeout_seconds:g} s"
                    break
        if status is not None and not 200 <= status < 300:
            error = f"HTTP {status}"
    except httpx.TimeoutException as e:
        error = f"timeout: {type(e).__name__}"
    except httpx.HTTPError as e:
        error = f"{type(e).__name__}: {e}"[:500]
    return deliveries.Result(
        started_at=started,
        duration_ms=int((time.monotonic() - t0) * 1000),
        http_status=status,
        error=error,
    )


def client(cfg: OutConfig) -> httpx.Client:
    return httpx.Client(
        timeout=httpx.Timeout(cfg.timeout_seconds, connect=cfg.connect_timeout_seconds),
        follow_redirects=False,
        trust_env=False,  # no proxy from the environment between us and the endpoint
    )


def attempt_delivery(
    sessions: sessionmaker[Session],
    delivery_id: int,
    cfg: OutConfig,
    *,
    rng: random.Random,
    http: httpx.Client,
    clock: Callable[[], datetime] = _now,
) -> str:
    """Start, send, finish one attempt of a delivery. Returns its outcome, or "skipped" when
    the row was not due (sent already, held by another attempt, endpoint deleted)."""
    with transaction(sessions) as s:
        attempt = deliveries.start(s, delivery_id, lease_seconds=cfg.lease_seconds, now=clock())
    if attempt is None:
        return "skipped"
    result = post(attempt, cfg, client=http)
    retry_in = deliveries.backoff_seconds(
        attempt.attempt, base=cfg.backoff_base_seconds, cap=cfg.backoff_cap_seconds, rng=rng
    )
    with transaction(sessions) as s:
        outcome = deliveries.finish(
            s, attempt, result, now=clock(), retry_in=retry_in,
            give_up_after=cfg.give_up_after_seconds,
        )  # fmt: skip
    level = logging.INFO if outcome != "retry" else logging.WARNING
    log.log(
        level,
        "webhook %s %s to %s: %s (attempt %s%s)",
        attempt.event_type,
        attempt.event_id,
        attempt.url,
        outcome,
        attempt.attempt,
        f", {result.error}" if result.error else "",
        extra={"event_id": attempt.event_id, "outcome": outcome},
    )
    return outcome


def sweep(
    sessions: sessionmaker[Session],
    enqueue: Callable[[int], None],
    cfg: OutConfig,
    *,
    clock: Callable[[], datetime] = _now,
) -> int:
    """Spend alerts' unsent notifications become events, then due deliveries are claimed and
    enqueued (after the claim commits). Returns how many were enqueued."""
    with transaction(sessions) as s:
        events.promote_notifications(s, batch=cfg.sweep_batch, now=clock())
    with transaction(sessions) as s:
        due = deliveries.claim_due(
            s, batch=cfg.sweep_batch, hold_seconds=cfg.sweep_hold_seconds, now=clock()
        )
    for delivery_id in due:
        enqueue(delivery_id)
    return len(due)
