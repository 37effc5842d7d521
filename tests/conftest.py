"""Shared fixtures: a real PostgreSQL database and a real Redis for the whole suite.

Where they come from: TEST_DATABASE_URL / DATABASE_URL and REDIS_URL when set (CI points them at
the machine's services), otherwise the embedded servers under .local/ (as `make run` uses).
The suite works in its own database, `billing_test_<pid>`, created and migrated at the start of
a run and dropped at its end, so that runs side by side (two checkouts, CI and a developer) never
share state.

Under pytest-xdist (`make test` runs `pytest -n ...`) every worker is a process of its own, so
it gets its own database by the same rule, and its own Redis database: REDIS_URL's db number
plus the worker's index (gw0 -> +0, gw1 -> +1, ...), exported as REDIS_URL for the processes
tests start. Workers starting the embedded servers at the same moment take turns (a file lock).

Tests that start real processes or a browser are marked `slow` (see SLOW_MODULES), so
`pytest -m "not slow"` is the quick inner loop; `make test` runs everything.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from devstack.services import embedded_running, resolve_urls, stop_embedded
from migrations_runner import upgrade
from models.db import make_engine
from settings import PROJECT_ROOT

pytest_plugins = ["tests.api_helpers", "tests.sync_helpers"]

TEST_DATABASE = f"billing_test_{os.getpid()}"
ALL_TABLES = (
    "sync_attempts, invoice_sync, invoice_monthly_rollups, invoice_items, invoices, "
    "invoice_number_sequences, api_tokens, organizations, "
    "usage_events, usage_event_ids, usage_drafts, prices, stripe_events, invoice_payments, "
    "subscriptions, billing_runs, usage_audit, "
    "billing_run_invoices, spend_alert_firings, spend_alerts, notification_outbox, idempotency_keys, "
    "credit_note_lines, credit_notes, outage_incidents, "
    "webhook_delivery_attempts, webhook_deliveries, webhook_events, webhook_endpoints"
)


def _with_database(url: str, database: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _drop(server_url: str, database: str) -> None:
    with psycopg.connect(_with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')


def _recreate(server_url: str, database: str) -> None:
    _drop(server_url, database)
    with psycopg.connect(_with_database(server_url, "postgres"), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{database}"')


def _local_dir() -> Path:
    return Path(os.environ.get("BILLING_LOCAL_DIR", PROJECT_ROOT / ".local"))


def _uses_embedded() -> bool:
    db = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    return not db or not os.environ.get("REDIS_URL")


def _is_controller(config: pytest.Config) -> bool:
    # Under xdist the controller runs no tests; its workers carry `workerinput`.
    return not hasattr(config, "workerinput")


def pytest_sessionstart(session: pytest.Session) -> None:
    # `make test` stops the embedded servers only if this run is the one that starts them. The
    # decision is the controller's: a worker that finishes first must not stop servers that the
    # others still use.
    if _is_controller(session.config):
        session.config.stash[_EMBEDDED_WERE_UP] = not _uses_embedded() or embedded_running(
            _local_dir()
        )


def pytest_sessionfinish(session: pytest.Session) -> None:
    if _is_controller(session.config) and not session.config.stash.get(_EMBEDDED_WERE_UP, True):
        stop_embedded(_local_dir())


_EMBEDDED_WERE_UP = pytest.StashKey[bool]()


# Every test in these files is marked slow: they start real Celery worker and beat processes,
# or a browser, and take seconds each. Kept here rather than as `pytestmark` lines so that the
# list of what the quick loop leaves out is in one place.
SLOW_MODULES = frozenset(
    {"test_sync_worker.py", "test_dashboard_browser.py", "test_credit_notes_sync.py"}
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.name in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
    # Slow tests first (a stable sort keeps the rest in file order): xdist hands tests out in
    # this order, so the long ones start at once on different workers instead of arriving last
    # and leaving one worker busy while the others idle.
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def worker_index() -> int:
    """0 outside xdist, else N for worker `gwN`."""
    return int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw"))


def _with_redis_db(url: str, offset: int) -> str:
    parts = urlsplit(url)
    base = int(parts.path.strip("/") or 0)
    return urlunsplit(parts._replace(path=f"/{base + offset}"))


@pytest.fixture(scope="session")
def service_urls() -> tuple[str, str]:
    """The servers' URLs: the configured ones, or the embedded servers (started on demand; see
    pytest_sessionfinish for who stops them)."""
    local_dir = _local_dir()
    db = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    redis = os.environ.get("REDIS_URL")
    if db and redis:
        return db, redis
    # Embedded servers: the first caller starts them, the others must wait and find them
    # running, not start a second PostgreSQL on the same folder (xdist workers start together).
    local_dir.mkdir(parents=True, exist_ok=True)
    with open(local_dir / "embedded.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        return resolve_urls(db, redis, local_dir)


@pytest.fixture(scope="session")
def database_url(service_urls: tuple[str, str]) -> Iterator[str]:
    server_url, _ = service_urls
    _recreate(server_url, TEST_DATABASE)
    url = _with_database(server_url, TEST_DATABASE)
    upgrade(url)
    yield url
    _drop(server_url, TEST_DATABASE)


@pytest.fixture(scope="session")
def redis_url(service_urls: tuple[str, str]) -> Iterator[str]:
    """This worker's Redis database, also exported, so that a process a test starts with the
    environment inherited talks to the same one."""
    url = _with_redis_db(service_urls[1], worker_index())
    with pytest.MonkeyPatch.context() as env:
        env.setenv("REDIS_URL", url)
        yield url


@pytest.fixture(scope="session")
def engine(database_url: str) -> Iterator[sa.Engine]:
    eng = make_engine(database_url, pool_size=5)
    yield eng
    eng.dispose()


@pytest.fixture
def db(engine: sa.Engine) -> Iterator[Session]:
    """A session inside an outer transaction that is rolled back at teardown: fast isolation.
    Code under test may commit; its commits become savepoints of the outer transaction."""
    conn = engine.connect()
    outer = conn.begin()
    session = Session(bind=conn, join_transaction_mode="create_savepoint", expire_on_commit=False)
    try:
        yield session
    finally:
        session.close()
        outer.rollback()
        conn.close()


@pytest.fixture
def committed(engine: sa.Engine) -> Iterator[sessionmaker[Session]]:
    """A session factory whose commits are real (for concurrency tests and other processes);
    every table is truncated afterwards."""
    factory = sessionmaker(engine, class_=Session, expire_on_commit=False)
    yield factory
    truncate_all(engine)


def truncate_all(engine: sa.Engine) -> None:
    """Empty every table. Finalized invoices refuse TRUNCATE (migration 0003) unless the
    transaction opts in; SET LOCAL keeps the opt-in from leaking into the pooled connection."""
    with engine.begin() as conn:
        conn.execute(sa.text("SET LOCAL billing.allow_truncate = 'on'"))
        # Usage events and ids take the audited path (migration 0008), like any deliberate reset.
        conn.execute(sa.text("INSERT INTO usage_audit (reason) VALUES ('test suite reset')"))
        conn.execute(sa.text(f"TRUNCATE {ALL_TABLES} RESTART IDENTITY CASCADE"))
