"""End to end with a real `celery worker` process: an enqueued invoice reaches Stripe (the mock
over HTTP), and an invoice whose enqueue was lost is found by the sweeper."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from celery import Celery
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import outbox
from settings import PROJECT_ROOT
from sync import claims
from sync.config import SyncConfig
from tests.factories import make_invoice, make_org
from tests.sync_helpers import Mock


@pytest.fixture
def worker(sync_config: SyncConfig) -> Iterator[Celery]:
    env = {
        **os.environ,
        "DATABASE_URL": sync_config.database_url,
        "REDIS_URL": sync_config.redis_url,
        "STRIPE_API_BASE": sync_config.stripe_api_base,
        "BILLING_SYNC_QUEUE": sync_config.queue,
        "SYNC_BACKOFF_BASE": "0.05",
        "SYNC_BACKOFF_CAP": "0.2",
        "STRIPE_RATE_LIMIT": "200",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "sync.celery_app",
            "worker",
            "-Q",
            sync_config.queue,
            "-c",
            "2",
            "--loglevel=WARNING",
            "-n",
            f"test-{os.getpid()}@%h",
        ],
        cwd=PROJECT_ROOT,
        env=env,
        start_new_session=True,
    )
    client = Celery(broker=sync_config.redis_url)
    yield client
    os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)


def wait_for_state(
    factory: sessionmaker[Session], invoice_id: int, state: str, *, seconds: float
) -> str:
    deadline = time.monotonic() + seconds
    current = ""
    while time.monotonic() < deadline:
        with factory() as s:
            row = outbox.get(s, invoice_id)
            current = row.state if row else ""
        if current == state:
            return current
        time.sleep(0.2)
    return current


def test_a_real_worker_syncs_an_enqueued_invoice_and_the_sweeper_finds_a_lost_one(
    worker: Celery, sync_config: SyncConfig, mock: Mock, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="e2e")
        enqueued = make_invoice(s, org, status="open", lines=70)
        lost = make_invoice(s, org, status="open", lines=5)  # committed, but never enqueued
    worker.send_task("sync.sync_invoice", args=[enqueued.id], queue=sync_config.queue)
    assert wait_for_state(committed, enqueued.id or 0, "synced", seconds=60) == "synced"
    assert wait_for_state(committed, lost.id or 0, "synced", seconds=0.5) == "pending"

    worker.send_task("sync.sweep", queue=sync_config.queue)
    assert wait_for_state(committed, lost.id or 0, "synced", seconds=30) == "synced"
    remote = {i["metadata"]["invoice_id"]: i for i in mock.invoices()}
    assert remote[enqueued.public_id]["total"] == enqueued.total_cents
    assert remote[lost.public_id]["lines"]["total_count"] == 5 and len(remote) == 2


def test_sweeper_claims_skip_rows_another_sweeper_holds(committed: sessionmaker[Session]) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="sweepy")
        ids = {make_invoice(s, org, status="open", lines=1).id for _ in range(4)}
    with committed() as first:
        first.begin()
        held = set(claims.sweep_due(first, batch=2, hold_seconds=60))
        with committed() as second, second.begin():
            other = set(claims.sweep_due(second, batch=10, hold_seconds=60))
        first.commit()
    assert len(held) == 2 and held | other == ids and not held & other
    with committed() as s, s.begin():
        assert claims.sweep_due(s, batch=10, hold_seconds=60) == []  # held back while queued
        pending = s.execute(
            sa.text("SELECT count(*) FROM invoice_sync WHERE state = 'pending'")
        ).scalar_one()
    assert pending == 4
