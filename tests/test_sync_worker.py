"""End to end with real `celery worker` and `celery beat` processes on a queue of this run's
own: an enqueued invoice reaches the mock Stripe over HTTP; an invoice whose enqueue was lost
is found by the sweeper; a worker killed with SIGKILL mid-sync is taken over without a
duplicate; `enqueue_sync` never raises when the broker is down."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest
import redis
from celery import Celery
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models.sync_state import outbox
from settings import PROJECT_ROOT
from sync.config import SyncConfig
from tests.factories import make_invoice, make_org
from tests.sync_helpers import Mock, assert_exactly_once, free_port, history

Spawn = Callable[[str], subprocess.Popen[bytes]]


def _env(cfg: SyncConfig) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": cfg.database_url,
        "REDIS_URL": cfg.redis_url,
        "STRIPE_API_BASE": cfg.stripe_api_base,
        "BILLING_SYNC_QUEUE": cfg.queue,
        "SYNC_BACKOFF_BASE": "0.05",
        "SYNC_BACKOFF_CAP": "0.2",
        "SYNC_SWEEP_EVERY": "0.5",
        "SYNC_SWEEP_HOLD": "5",
        "SYNC_LEASE_SECONDS": "5",
        "STRIPE_RATE_LIMIT": "200",
    }


@pytest.fixture
def spawn(sync_config: SyncConfig, tmp_path: Path) -> Iterator[Spawn]:
    """Start `celery worker` or `celery beat` for this test (logs and beat's schedule file in
    the test's tmp_path); all are stopped at teardown."""
    procs: list[subprocess.Popen[bytes]] = []
    files: list[IO[bytes]] = []
    logs = tmp_path

    def start(kind: str) -> subprocess.Popen[bytes]:
        n = len(procs)
        # Through the composition root, as `billing worker` / `billing beat` run in production.
        argv = [sys.executable, "-m", "cli", kind]
        if kind == "worker":
            argv += ["--concurrency", "2", "--hostname", f"t{os.getpid()}-{n}@%h"]
        else:
            argv += ["--schedule", str(logs / f"beat-{n}")]
        log = open(logs / f"{kind}-{n}.log", "wb")  # noqa: SIM115 - outlives this function
        files.append(log)
        proc = subprocess.Popen(
            [*argv, "--loglevel=WARNING"],
            cwd=PROJECT_ROOT,
            env=_env(sync_config),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: SIGKILL reaches its children too
        )
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
    for log in files:
        log.close()


def wait_for(
    factory: sessionmaker[Session], invoice_id: int | None, state: str, *, seconds: float
) -> str:
    deadline = time.monotonic() + seconds
    current = ""
    while time.monotonic() < deadline:
        with factory() as s:
            row = outbox.get(s, invoice_id or 0)
            current = row.state if row else ""
        if current == state:
            break
        time.sleep(0.1)
    return current


def test_a_real_worker_syncs_an_enqueued_invoice_and_beat_sweeps_a_lost_one(
    spawn: Spawn, sync_config: SyncConfig, mock: Mock, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="e2e")
        enqueued = make_invoice(s, org, status="open", lines=70)
        lost = make_invoice(s, org, status="open", lines=5)  # committed, never enqueued
    spawn("worker")
    client = Celery(broker=sync_config.redis_url)
    client.send_task("sync.sync_invoice", args=[enqueued.id], queue=sync_config.queue)
    assert wait_for(committed, enqueued.id, "synced", seconds=60) == "synced"
    assert wait_for(committed, lost.id, "synced", seconds=1) == "pending"

    spawn("beat")  # its sweeper finds the invoice nobody enqueued
    assert wait_for(committed, lost.id, "synced", seconds=30) == "synced"
    assert_exactly_once(mock, enqueued, lines=70)
    assert_exactly_once(mock, lost, lines=5)


def test_a_worker_killed_mid_sync_is_taken_over_without_a_duplicate(
    spawn: Spawn, sync_config: SyncConfig, mock: Mock, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        inv = make_invoice(s, make_org(s, slug="killed"), status="open", lines=120)
    # Every add_lines is slow, so the worker is surely mid-attempt when it dies.
    mock.faults(
        [
            {
                "endpoint": "POST /v1/invoices/{id}/add_lines",
                "fault": "slow",
                "seconds": 1.0,
                "count": 2,
            }
        ],
        idempotency_ttl_seconds=1,  # and its keys expire before anyone retries
    )
    victim = spawn("worker")
    Celery(broker=sync_config.redis_url).send_task(
        "sync.sync_invoice", args=[inv.id], queue=sync_config.queue
    )
    assert wait_for(committed, inv.id, "syncing", seconds=30) == "syncing"
    time.sleep(1.2)  # one chunk is on Stripe, the next in flight
    os.killpg(victim.pid, signal.SIGKILL)
    victim.wait()
    spawn("worker")
    spawn("beat")  # the lease (5 s) expires, the sweeper hands the invoice to the new worker
    assert wait_for(committed, inv.id, "synced", seconds=60) == "synced"
    assert_exactly_once(mock, inv, lines=120)
    assert "WorkerLost" in [h["error_class"] for h in history(committed, inv.id)]


def _enqueue_in_subprocess(cfg: SyncConfig, redis_url: str, invoice_id: int) -> float:
    code = (
        "import time, bootstrap; from sync.celery_app import enqueue_sync; "
        "bootstrap.sync_config(bootstrap.settings()); t = time.monotonic(); "
        f"enqueue_sync({invoice_id}); print(time.monotonic() - t)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env={**_env(cfg), "REDIS_URL": redis_url},
        capture_output=True,
        timeout=60,
        check=True,  # enqueue_sync must not raise, whatever the broker does
    )
    return float(out.stdout.decode().split()[-1])


def test_enqueue_sync_puts_a_message_on_the_queue(sync_config: SyncConfig) -> None:
    _enqueue_in_subprocess(sync_config, sync_config.redis_url, 42)
    assert redis.Redis.from_url(sync_config.redis_url).llen(sync_config.queue) == 1


def test_enqueue_sync_never_raises_when_the_broker_is_down(sync_config: SyncConfig) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    seconds = _enqueue_in_subprocess(sync_config, dead, 42)
    assert seconds < 10  # the API request waits a bounded time, then the sweeper covers it


def test_the_dev_stack_sees_its_worker_answer(sync_config: SyncConfig, spawn: Spawn) -> None:
    """`billing run` waits for the worker's ping before printing the banner; the ping must go
    to the configured broker (it went to Celery's default one, so `make run` gave up after a
    minute with "the sync worker did not answer"). Asked from a fresh process, as `billing run`
    asks, with nothing configured beforehand."""
    spawn("worker")
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from devstack.supervisor import wait_worker; from settings import "
            "Settings; sys.exit(0 if wait_worker(Settings(), 60) else 1)",
        ],
        cwd=PROJECT_ROOT,
        env=_env(sync_config),
        timeout=120,
    )
    assert probe.returncode == 0


def test_enqueue_before_configure_is_a_bug_not_a_broker_outage(sync_config: SyncConfig) -> None:
    """An unconfigured app publishes to Celery's default broker, where nothing listens; the
    enqueue used to log it as "broker down" and go on (how `close-period` and `make run` lost
    their messages). Now it raises: it is the caller's mistake, not an outage to ride out."""
    code = "from sync.celery_app import enqueue_sync; enqueue_sync(42)"
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_ROOT,
        env=_env(sync_config),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode != 0 and "not configured" in out.stderr, out.stderr[-500:]
