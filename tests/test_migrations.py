"""migrations/ (Alembic) against models/tables.py: upgrade, downgrade and upgrade again on an empty
database, and the SQLModel classes describe exactly the schema the migrations build."""

from __future__ import annotations

import os
from collections.abc import Iterator

import psycopg
import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from migrations_runner import downgrade, upgrade
from models.db import make_engine
from models.tables import SQLModel
from tests.conftest import _with_database

# Per process, like the suite's own database: two runs side by side (checkouts, xdist workers)
# must not drop each other's scratch database mid-test.
SCRATCH = f"billing_migrations_scratch_{os.getpid()}"


@pytest.fixture
def scratch_url(service_urls: tuple[str, str]) -> Iterator[str]:
    admin = _with_database(service_urls[0], "postgres")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{SCRATCH}"')
    yield _with_database(service_urls[0], SCRATCH)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{SCRATCH}" WITH (FORCE)')


def tables_of(url: str) -> set[str]:
    """Tables the migrations made, without alembic's own and without the monthly partitions of
    usage_events (created by date, not declared by the models)."""
    engine = make_engine(url, pool_size=1)
    try:
        names = set(sa.inspect(engine).get_table_names()) - {"alembic_version"}
        return {n for n in names if not n.startswith("usage_events_")}
    finally:
        engine.dispose()


def test_usage_events_is_partitioned_by_month(scratch_url: str) -> None:
    upgrade(scratch_url)
    with psycopg.connect(scratch_url) as conn:
        strategy = conn.execute(
            "SELECT partstrat FROM pg_partitioned_table WHERE partrelid = 'usage_events'::regclass"
        ).fetchone()
        parts = [
            r[0]
            for r in conn.execute(
                "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                "WHERE i.inhparent = 'usage_events'::regclass ORDER BY 1"
            )
        ]
    assert strategy == ("r",)
    assert "usage_events_default" in parts
    assert len([p for p in parts if p != "usage_events_default"]) == 6  # -2 .. +3 months


def test_upgrade_downgrade_upgrade(scratch_url: str) -> None:
    upgrade(scratch_url)
    assert tables_of(scratch_url) == set(SQLModel.metadata.tables)
    downgrade(scratch_url, "base")
    assert tables_of(scratch_url) == set()
    upgrade(scratch_url)
    assert tables_of(scratch_url) == set(SQLModel.metadata.tables)


def test_models_match_migrations(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    # Indexes with DESC columns and partial indexes live in the migration only (the models do not
    # declare them); everything else, columns and their types, must agree.
    # The monthly partitions of usage_events are tables the models do not declare either.
    relevant = [
        d
        for d in diff
        if not (isinstance(d, tuple) and d[0] in ("remove_index", "add_index"))
        and not (
            isinstance(d, tuple)
            and d[0] == "remove_table"
            and d[1].name.startswith("usage_events_")
        )
    ]
    assert relevant == []


def _guards(url: str) -> tuple[set[str], str]:
    engine = make_engine(url, pool_size=1)
    try:
        with engine.connect() as conn:
            triggers = set(
                conn.execute(
                    sa.text("SELECT tgname FROM pg_trigger WHERE tgname LIKE '%truncate_guard'")
                ).scalars()
            )
            body = conn.execute(
                sa.text("SELECT prosrc FROM pg_proc WHERE proname = 'invoice_items_guard'")
            ).scalar_one()
        return triggers, str(body)
    finally:
        engine.dispose()


def test_finalized_holes_migration_downgrades_to_the_old_guards(scratch_url: str) -> None:
    """0003 replaces 0001's trigger functions in place; its downgrade puts the old bodies back
    and drops the TRUNCATE triggers, and upgrading again reinstates them."""
    upgrade(scratch_url)
    new = _guards(scratch_url)
    assert new[0] == {"invoices_truncate_guard", "invoice_items_truncate_guard"}
    assert "old_status" in new[1]
    downgrade(scratch_url, "0001")
    old = _guards(scratch_url)
    assert old[0] == set() and "parent_status" in old[1] and "old_status" not in old[1]
    upgrade(scratch_url)
    assert _guards(scratch_url) == new
