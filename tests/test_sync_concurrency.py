"""Concurrency and the shared Redis state: two workers and two resyncs on one invoice, the
sweeper (lost enqueues, held rows, dead workers' leases), the circuit breaker against the mock,
the shared rate limiter, and what /readyz and /metrics read."""

from __future__ import annotations

import threading
import time
from dataclasses import replace

import sqlalchemy as sa
from prometheus_client import CollectorRegistry, generate_latest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import tables
from models.sync_state import outbox
from sync import health, sweeper, tasks
from sync.attempt import Outcome
from sync.breaker import Breaker, BreakerState
from sync.limiter import RateLimiter
from sync.runtime import Runtime
from tests.factories import NOW
from tests.sync_helpers import (
    Mock,
    assert_exactly_once,
    drive,
    finalized,
    history,
    run_once,
    sync_row,
)


def test_two_workers_and_two_resyncs_make_one_remote_invoice(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed, lines=80)
    # Slow add_lines keep the first attempt in flight while everything else happens.
    mock.faults(
        [
            {
                "endpoint": "POST /v1/invoices/{id}/add_lines",
                "fault": "slow",
                "seconds": 0.3,
                "probability": 1.0,
            }
        ]
    )
    outcomes: list[str] = []
    start = threading.Barrier(4)
    # Celery sets a task's request stack up on its first call, and not thread-safely.
    assert tasks.sync_invoice(0) == "not_due"

    def work() -> None:
        start.wait()
        outcomes.append(tasks.sync_invoice(inv.id))  # the Celery task function, in-process

    def resync() -> None:
        start.wait()
        time.sleep(0.2)
        with committed() as s, s.begin():
            outbox.request_resync(s, s.get_one(tables.Invoice, inv.id), now=NOW)

    threads = [threading.Thread(target=work) for _ in range(2)]
    threads += [threading.Thread(target=resync) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # One worker held the lease; the other found it taken and did nothing.
    assert sorted(outcomes) == ["again", "not_due"]
    mock.faults([])
    assert drive(rt, inv.id) == [Outcome.SYNCED]  # the resyncs' re-verify
    row = sync_row(committed, inv.id)
    assert (row.state, row.verify_requested) == ("synced", False)
    assert_exactly_once(mock, inv, lines=80)
    creates = mock.stats()["requests"]["POST /v1/invoices"]
    assert creates == {"200": 1}


def test_many_workers_many_invoices_with_faults_each_exactly_once(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    rt = replace(rt, config=replace(rt.config, max_attempts=40))
    invs = [finalized(committed, lines=n) for n in (1, 30, 51, 75, 101, 7)]
    mock.faults(
        [
            {"endpoint": "*", "fault": "error_500", "probability": 0.15},
            {"endpoint": "*", "fault": "lost_response", "probability": 0.1},
        ],
        seed=7,
        idempotency_ttl_seconds=0.3,  # most retries outlive their keys
    )

    def work() -> None:
        for _ in range(60):
            for inv in invs:
                run_once(rt, inv.id)
            time.sleep(0.06)
            if all(sync_row(committed, i.id).state in ("synced", "failed") for i in invs):
                return

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for inv in invs:
        assert sync_row(committed, inv.id).state == "synced"
        assert_exactly_once(mock, inv, lines=inv.line_item_count)
    assert len(mock.customers()) == 1


def test_the_sweeper_enqueues_what_was_never_enqueued_once(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    lost = [finalized(committed).id for _ in range(3)]  # committed, enqueue lost
    sent: list[int] = []
    assert sweeper.sweep(rt, sent.append) == 3 and sorted(sent) == sorted(lost)
    assert sweeper.sweep(rt, sent.append) == 0  # held while their messages wait in the queue
    for invoice_id in sent:
        assert run_once(rt, invoice_id) == Outcome.SYNCED
    assert len(mock.invoices()) == 3
    # Back-pressure: a queue already at its depth gets nothing more.
    more = finalized(committed).id
    assert sweeper.sweep(rt, sent.append, depth=rt.config.max_queue_depth) == 0
    assert sweeper.sweep(rt, sent.append, depth=0) == 1 and sent[-1] == more


def test_the_sweeper_takes_over_a_dead_workers_lease(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    with committed() as s, s.begin():  # a worker claimed it, then was SIGKILLed
        s.execute(
            sa.text(
                "UPDATE invoice_sync SET state = 'syncing', attempts = 1, lease_owner = 'dead',"
                " last_attempt_at = now() - interval '5 minutes',"
                " locked_until = now() - interval '1 second' WHERE invoice_id = :i"
            ),
            {"i": inv.id},
        )
    sent: list[int] = []
    assert sweeper.sweep(rt, sent.append) == 1
    row = sync_row(committed, inv.id)
    assert (row.state, row.last_error_class, row.lease_owner) == ("retrying", "WorkerLost", None)
    assert [h["error_class"] for h in history(committed, inv.id)] == ["WorkerLost"]
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert sync_row(committed, inv.id).attempts == 2
    assert_exactly_once(mock, inv, lines=3)


def test_an_invoice_that_keeps_killing_workers_fails_instead_of_looping(
    rt: Runtime, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    with committed() as s, s.begin():
        s.execute(
            sa.text(
                "UPDATE invoice_sync SET state = 'syncing', attempts = :n, lease_owner = 'dead',"
                " last_attempt_at = now(), locked_until = now() - interval '1 second'"
                " WHERE invoice_id = :i"
            ),
            {"i": inv.id, "n": rt.config.max_attempts},
        )
    sent: list[int] = []
    assert sweeper.sweep(rt, sent.append) == 0
    assert sync_row(committed, inv.id).state == "failed"


def test_an_auth_error_pauses_everything_until_the_key_works(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    a, b = finalized(committed), finalized(committed)
    mock.faults([{"endpoint": "*", "fault": "auth_error", "probability": 1.0}])
    assert run_once(rt, a.id) == Outcome.PAUSED
    row = sync_row(committed, a.id)
    # Not failed, attempt given back, the error shown.
    assert (row.state, row.attempts, row.last_error_class, row.last_error_http_status) == (
        "retrying",
        0,
        "AuthenticationError",
        401,
    )
    assert rt.gateway.breaker.state() == BreakerState.OPEN
    name, ok, detail = health.readiness(rt.gateway.breaker)
    assert (name, ok) == ("stripe_sync", False) and "paused" in detail

    calls = mock.total_requests()
    sent: list[int] = []
    assert [run_once(rt, i.id) for i in (a, b)] == [Outcome.PAUSED, Outcome.PAUSED]
    assert sweeper.sweep(rt, sent.append) == 0 and sent == []
    assert sweeper.reconcile(rt, sent.append) == 0
    assert mock.total_requests() == calls, "no call may reach Stripe while the breaker is open"
    assert sync_row(committed, b.id).attempts == 0  # b was never even claimed

    mock.faults([])  # the key works again
    time.sleep(rt.config.breaker_seconds + 0.1)  # open period over: half-open, one probe
    assert drive(rt, a.id) == [Outcome.SYNCED]
    assert drive(rt, b.id) == [Outcome.SYNCED]
    assert health.readiness(rt.gateway.breaker)[1]


def test_the_breaker_admits_one_probe_when_half_open(rt: Runtime) -> None:
    breaker = Breaker(rt.gateway.breaker.client, base_seconds=0.2, namespace=rt.config.queue)
    assert breaker.admit() and breaker.state() == BreakerState.CLOSED
    assert breaker.trip() == 0.2
    # 401s of calls that were already in flight when it opened do not extend the open period.
    assert [round(breaker.trip(), 1) for _ in range(3)] == [0.2, 0.2, 0.2]
    assert not breaker.admit() and breaker.state() == BreakerState.OPEN
    time.sleep(0.25)
    assert breaker.state() == BreakerState.HALF_OPEN
    assert [breaker.admit() for _ in range(5)] == [True, False, False, False, False]
    assert breaker.trip() == 0.4  # the probe failed: open twice as long
    time.sleep(0.45)
    assert breaker.admit()
    breaker.record_success()
    assert breaker.state() == BreakerState.CLOSED and all(breaker.admit() for _ in range(3))


def test_the_rate_limit_is_shared_by_every_caller(rt: Runtime) -> None:
    client = rt.gateway.breaker.client
    key = f"{rt.config.queue}:test:bucket"
    limiters = [RateLimiter(client, per_second=50, key=key) for _ in range(3)]
    started = time.monotonic()

    def take(limiter: RateLimiter) -> None:
        for _ in range(25):
            limiter.acquire()

    threads = [threading.Thread(target=take, args=(lim,)) for lim in limiters]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    # 75 tokens at 50/s with a burst of 50: at least (75 - 50) / 50 = 0.5 s, whoever asks.
    assert time.monotonic() - started >= 0.45


def test_metrics_collector_reads_states_queue_and_breaker(
    rt: Runtime, committed: sessionmaker[Session]
) -> None:
    finalized(committed)
    registry = CollectorRegistry()
    cfg = rt.config
    engine = rt.sessions.kw["bind"]
    registry.register(health.SyncCollector(engine, rt.gateway.breaker.client, cfg))
    text = generate_latest(registry).decode()
    assert 'billing_sync_invoices{state="pending"} 1.0' in text
    assert "billing_sync_queue_depth 0.0" in text and "billing_sync_breaker_open 0.0" in text


def _oldest_pending(rt: Runtime) -> float:
    registry = CollectorRegistry()
    engine = rt.sessions.kw["bind"]
    registry.register(health.SyncCollector(engine, rt.gateway.breaker.client, rt.config))
    value = registry.get_sample_value("billing_sync_oldest_pending_seconds")
    assert value is not None
    return value


def test_oldest_pending_is_the_age_of_the_oldest_invoice_not_yet_on_stripe(
    rt: Runtime, committed: sessionmaker[Session]
) -> None:
    """The runbook's capacity alarm at month end: every invoice still waiting for Stripe counts,
    the one a worker holds right now too (at month end the oldest are the ones in flight);
    synced and FAILED ones do not (FAILED waits for a person and has its own alert)."""
    assert _oldest_pending(rt) == 0.0
    ages = {"pending": 600, "retrying": 1200, "syncing": 3600, "synced": 7200, "failed": 9000}
    for state, seconds in ages.items():
        inv = finalized(committed)
        with committed() as s, s.begin():
            s.execute(
                sa.text(
                    "UPDATE invoice_sync SET state = :st, created_at = now() - make_interval("
                    "secs => :age) WHERE invoice_id = :i"
                ),
                {"st": state, "age": seconds, "i": inv.id},
            )
    assert 3600 <= _oldest_pending(rt) < 3600 + 60


def test_reconcile_reverifies_long_synced_invoices(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed, lines=4)
    assert run_once(rt, inv.id) == Outcome.SYNCED
    quick = replace(rt, config=replace(rt.config, reconcile_after_seconds=0))
    sent: list[int] = []
    assert sweeper.reconcile(quick, sent.append) == 1 and sent == [inv.id]
    assert sync_row(committed, inv.id).verify_requested
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert_exactly_once(mock, inv, lines=4)
