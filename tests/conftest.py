"""Shared fixtures: a real PostgreSQL database and a real Redis for the whole suite.

Where they come from: TEST_DATABASE_URL / DATABASE_URL and REDIS_URL when set (CI points them at
the machine's services), otherwise the embedded servers under .local/ (as `make run` uses).
The suite works in its own database, `billing_test_<pid>`, created and migrated at the start of
a run and dropped at its end, so that runs side by side (two checkouts, CI and a developer) never
share state.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from devstack.services import resolve_urls
from migrations_runner import upgrade
from models.db import make_engine
from settings import PROJECT_ROOT

pytest_plugins = ["tests.api_helpers", "tests.sync_helpers"]

TEST_DATABASE = f"billing_test_{os.getpid()}"
ALL_TABLES = (
    "sync_attempts, invoice_sync, invoice_monthly_rollups, invoice_items, invoices, "
    "invoice_number_sequences, api_tokens, organizations, "
    "usage_events, usage_event_ids, usage_drafts, prices"
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


@pytest.fixture(scope="session")
def service_urls() -> tuple[str, str]:
    local_dir = Path(os.environ.get("BILLING_LOCAL_DIR", PROJECT_ROOT / ".local"))
    db = os.environ.get("TEST_DATABASE_URL") or os.environ.get("DATABASE_URL")
    return resolve_urls(db, os.environ.get("REDIS_URL"), local_dir)


@pytest.fixture(scope="session")
def database_url(service_urls: tuple[str, str]) -> Iterator[str]:
    server_url, _ = service_urls
    _recreate(server_url, TEST_DATABASE)
    url = _with_database(server_url, TEST_DATABASE)
    upgrade(url)
    yield url
    _drop(server_url, TEST_DATABASE)


@pytest.fixture(scope="session")
def redis_url(service_urls: tuple[str, str]) -> str:
    return service_urls[1]


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
    with engine.begin() as conn:
        conn.execute(sa.text(f"TRUNCATE {ALL_TABLES} RESTART IDENTITY CASCADE"))
