"""Fixtures for the sync tests: the mock Stripe over real HTTP (uvicorn in a thread), a sync
Runtime wired to it, and a queue and Redis namespace of this test run's own."""

from __future__ import annotations

import os
import random
import socket
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import tables
from models.sync_state import outbox
from models.tables import SyncStatus
from settings import Settings
from stripe_mock import running
from sync import attempt, runtime
from sync.attempt import Outcome
from sync.config import SyncConfig
from sync.runtime import Runtime
from tests.factories import make_invoice, make_org


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mock:
    url: str

    def reset(self) -> None:
        httpx.post(f"{self.url}/_mock/reset").raise_for_status()
        self.faults([], idempotency_ttl_seconds=86400, search_lag_seconds=0)

    def faults(self, rules: list[dict[str, Any]], **extra: Any) -> None:
        httpx.post(f"{self.url}/_mock/faults", json={"rules": rules, **extra}).raise_for_status()

    def invoices(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(f"{self.url}/_mock/invoices").json()["data"]
        return data

    def customers(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(f"{self.url}/_mock/customers").json()["data"]
        return data

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/_mock/stats").json()
        return body

    def total_requests(self) -> int:
        return int(self.stats()["total"])

    def remote_for(self, public_id: str) -> list[dict[str, Any]]:
        return [i for i in self.invoices() if i["metadata"].get("invoice_id") == public_id]


@pytest.fixture(scope="session")
def mock_server() -> Iterator[Mock]:
    with running() as url:
        yield Mock(url)


@pytest.fixture
def mock(mock_server: Mock) -> Mock:
    mock_server.reset()
    return mock_server


def _clear(client: redis.Redis, queue: str) -> None:
    stale = [*client.scan_iter(f"{queue}*"), *client.scan_iter(f"_kombu.binding.{queue}")]
    if stale:
        client.delete(*stale)


@pytest.fixture
def sync_config(database_url: str, redis_url: str, mock: Mock) -> Iterator[SyncConfig]:
    """Tiny backoffs, a 1 s breaker, a short HTTP timeout, and a queue and Redis namespace
    that no other test run shares."""
    queue = f"billing-test-{os.getpid()}"
    settings = Settings(database_url=database_url, redis_url=redis_url, sync_queue=queue)
    cfg = replace(
        SyncConfig.from_settings(settings),
        stripe_api_base=mock.url,
        stripe_timeout_seconds=2.0,
        rate_limit_per_second=1000.0,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.05,
        breaker_seconds=1.0,
        max_attempts=5,
        lines_chunk=50,
    )
    client = redis.Redis.from_url(redis_url)
    _clear(client, queue)
    yield cfg
    _clear(client, queue)


@pytest.fixture
def rt(sync_config: SyncConfig, committed: sessionmaker[Session]) -> Iterator[Runtime]:
    """A sync runtime on the test database (its own engine: workers have their own sessions),
    also installed for the Celery task functions of this process. Its jitter is seeded, so a
    run's backoffs are the same every time."""
    built = runtime.build(sync_config, rng=random.Random(JITTER_SEED))
    runtime.install(built)
    yield built
    runtime.install(None)
    built.sessions.kw["bind"].dispose()


JITTER_SEED = 20260101

_attempts = iter(range(1, 1_000_000))


def run_once(rt: Runtime, invoice_id: int | None) -> Outcome:
    assert invoice_id is not None
    return attempt.run(rt, invoice_id, owner=f"test-{next(_attempts)}")


def advance_to_due(rt: Runtime, invoice_id: int | None) -> float | None:
    """Let time pass until a RETRYING invoice is due, without waiting: the sync's clock is the
    database's `now()`, so the test moves the row's `next_attempt_at` to now instead. Returns
    how far the clock was moved (seconds), or None when the row was not waiting for a backoff.
    """
    with rt.sessions() as s, s.begin():
        ahead = s.execute(
            sa.text(
                "UPDATE invoice_sync AS s SET next_attempt_at = now()"
                " FROM invoice_sync AS old"
                " WHERE s.invoice_id = :i AND old.invoice_id = s.invoice_id"
                " AND s.state = :retrying AND s.next_attempt_at > now()"
                " RETURNING extract(epoch FROM old.next_attempt_at - now())"
            ),
            {"i": invoice_id, "retrying": SyncStatus.RETRYING},
        ).scalar_one_or_none()
    return None if ahead is None else float(ahead)


def drive(rt: Runtime, invoice_id: int | None, *, max_runs: int = 12) -> list[Outcome]:
    """Attempts until the invoice settles (SYNCED or FAILED). Before each one, time moves on
    to the row's due time (`advance_to_due`), so the outcome never depends on how long the
    seeded jitter happened to be, and a backoff is checked against its bound, not slept."""
    outcomes: list[Outcome] = []
    for _ in range(max_runs):
        ahead = advance_to_due(rt, invoice_id)
        if ahead is not None and outcomes and outcomes[-1] == Outcome.RETRY:
            assert ahead <= rt.config.backoff_cap_seconds, f"backoff of {ahead} s over its cap"
        outcome = run_once(rt, invoice_id)
        outcomes.append(outcome)
        if outcome in (Outcome.SYNCED, Outcome.FAILED):
            return outcomes
    return outcomes


def finalized(
    factory: sessionmaker[Session], *, lines: int = 3, slug: str = "stripe-co"
) -> tables.Invoice:
    """A finalized (OPEN) invoice, committed, with its PENDING outbox row."""
    with factory() as s, s.begin():
        org = s.execute(
            sa.select(tables.Organization).where(tables.Organization.slug == slug)  # type: ignore[arg-type]
        ).scalar_one_or_none()
        org = org or make_org(s, slug=slug)
        return make_invoice(s, org, status="open", lines=lines)


def sync_row(factory: sessionmaker[Session], invoice_id: int | None) -> tables.InvoiceSync:
    with factory() as s:
        row = outbox.get(s, invoice_id or 0)
        assert row is not None
        return row


def history(factory: sessionmaker[Session], invoice_id: int | None) -> list[dict[str, Any]]:
    with factory() as s:
        rows = s.execute(
            sa.text(
                "SELECT attempt, step, outcome, error_class, error_code, http_status, request_id,"
                " calls FROM sync_attempts WHERE invoice_id = :i ORDER BY id"
            ),
            {"i": invoice_id},
        ).all()
    return [dict(r._mapping) for r in rows]


def assert_exactly_once(mock: Mock, inv: tables.Invoice, *, lines: int) -> dict[str, Any]:
    """One Stripe invoice for ours, finalized, with our total and `lines` lines."""
    remote = mock.remote_for(inv.public_id)
    assert len(remote) == 1, f"{len(remote)} Stripe invoices for {inv.public_id}"
    r = remote[0]
    assert r["status"] == "open", r["status"]
    assert r["total"] == inv.total_cents
    assert r["lines"]["total_count"] == lines == len(r["lines"]["data"])
    return r
