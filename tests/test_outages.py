"""Outages survived quietly (issue 24): PostgreSQL stops under a running API, worker and beat.

Before: the worker wrote 1,259 lines (21 tracebacks) in 20 s, every sweep a traceback. Now each
process logs one line when PostgreSQL goes away (then one a minute while it lasts, with the
count of failed attempts; `outage.py`, tested with a clock in test_outage_log.py), one when it
is back, backs off meanwhile, and recovers by itself; /readyz names the dependency that is
down; and nothing is lost: the outbox drains and every invoice is on the mock Stripe once.

Real processes (`billing serve`, `billing worker`, `billing beat`) on a PostgreSQL of the test's
own (tests/throwaway_pg.py), the mock Stripe over HTTP. Timings are short on purpose: a sweep
every 0.5 s (so the old code's storm shows within seconds), a 10 s lease (an attempt cut off by
the outage is taken over 10 s after it, not 3 minutes), a 12 s outage.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from devstack.supervisor import api_is_up
from migrations_runner import upgrade
from models.db import make_engine
from settings import PROJECT_ROOT
from stripe_mock import running
from tests.factories import make_invoice, make_org
from tests.live_server import free_port
from tests.sync_helpers import Mock
from tests.throwaway_pg import Throwaway, throwaway_postgres

INVOICES = 12
OUTAGE_SECONDS = 12


def _wait(what: str, ok: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ok():
            return
        time.sleep(0.2)
    raise AssertionError(f"{what}: not within {seconds} s")


def _states(engine: sa.Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT state, count(*) FROM invoice_sync GROUP BY state"))
        return {str(state): int(n) for state, n in rows}


@pytest.fixture
def pg() -> Iterator[Throwaway]:
    with throwaway_postgres(free_port()) as server:
        upgrade(server.url)
        yield server


def test_postgres_outage_is_survived_quietly_and_loses_nothing(
    tmp_path: Path, pg: Throwaway, redis_url: str
) -> None:
    engine = make_engine(pg.url, pool_size=2)
    with sessionmaker(engine, class_=Session, expire_on_commit=False)() as s, s.begin():
        org = make_org(s, slug="outage-co")
        invoices = [make_invoice(s, org, status="open", lines=2) for _ in range(INVOICES)]
    public_ids = [inv.public_id for inv in invoices]

    with running() as mock_url:
        mock = Mock(mock_url)
        # Each finalize takes 0.3 s, so the outage finds attempts in flight.
        mock.faults(
            [
                {
                    "endpoint": "POST /v1/invoices/{id}/finalize",
                    "fault": "slow",
                    "probability": 1.0,
                    "seconds": 0.3,
                }
            ]
        )
        port = free_port()
        env = {
            **os.environ,
            "DATABASE_URL": pg.url,
            "REDIS_URL": redis_url,
            "STRIPE_API_BASE": mock_url,
            "BILLING_SYNC_QUEUE": f"billing-outage-{os.getpid()}",
            "BILLING_LOCAL_DIR": str(tmp_path / "local"),
            "SYNC_SWEEP_EVERY": "0.5",
            "SYNC_SWEEP_HOLD": "2",
            "SYNC_LEASE_SECONDS": "10",
            "SYNC_BACKOFF_BASE": "0.2",
            "SYNC_BACKOFF_CAP": "1",
            "DB_CONNECT_TIMEOUT": "2",
            "PYTHONUNBUFFERED": "1",
        }
        commands = {
            "api": ["serve", "--port", str(port)],
            "worker": ["worker", "--concurrency", "1"],
            "beat": ["beat", "--schedule", str(tmp_path / "beat-schedule")],
        }
        logs = {name: tmp_path / f"{name}.log" for name in commands}
        procs: dict[str, subprocess.Popen[bytes]] = {}
        try:
            for name, argv in commands.items():
                with logs[name].open("wb") as out:
                    procs[name] = subprocess.Popen(
                        [sys.executable, "-m", "cli", *argv],
                        cwd=PROJECT_ROOT,
                        env=env,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                    )
            base = f"http://127.0.0.1:{port}"
            # Generous: three interpreters importing at once on a loaded machine.
            assert api_is_up(base, seconds=120), logs["api"].read_text()
            _wait("the first invoices synced", lambda: _states(engine).get("synced", 0) >= 2, 60)

            pg.stop()
            stopped_at = time.monotonic()
            engine.dispose()
            sizes = {name: len(log.read_text().splitlines()) for name, log in logs.items()}
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 503
            checks = ready.json()["checks"]
            assert checks["database"] != "ok" and checks["redis"] == "ok", checks
            time.sleep(max(0.0, OUTAGE_SECONDS - (time.monotonic() - stopped_at)))
            during = {
                name: log.read_text().splitlines()[sizes[name] :] for name, log in logs.items()
            }
            pg.start()

            _wait("the outbox drained", lambda: _states(engine) == {"synced": INVOICES}, 45)
            ready = httpx.get(f"{base}/readyz", timeout=10)
            assert ready.status_code == 200, ready.text
            for name, proc in procs.items():
                assert proc.poll() is None, f"{name} exited: {logs[name].read_text()[-2000:]}"
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                try:
                    proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    proc.kill()
            engine.dispose()

        # Nothing duplicated: one Stripe invoice per invoice of ours, finalized.
        remote = [i for i in mock.invoices() if i["metadata"].get("invoice_id") in public_ids]
        assert sorted(i["metadata"]["invoice_id"] for i in remote) == sorted(public_ids)
        assert {i["status"] for i in remote} == {"open"}

    text = {name: log.read_text() for name, log in logs.items()}
    for name in commands:
        assert "Traceback" not in text[name], f"{name}:\n{text[name][-3000:]}"
        # One line when it went away (the outage line), maybe a few of the attempts that were
        # running at that moment; never a line per sweep (24 sweeps in 12 s).
        assert len(during[name]) <= 6, f"{name} during the outage:\n" + "\n".join(during[name])
    for name in ("worker", "api"):
        went = [line for line in text[name].splitlines() if "PostgreSQL is unavailable" in line]
        back = [line for line in text[name].splitlines() if "PostgreSQL is back" in line]
        assert len(went) == 1 and len(back) == 1, f"{name}:\n{text[name][-3000:]}"
