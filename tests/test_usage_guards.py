"""The database's own guards around counted usage (migration 0008), tried through raw SQL: each
hole of issue 20 (ids deleted and reusable, events rewritten or truncated), and the audited path
that may still do it. Each statement runs in a savepoint of the rolled-back test transaction."""

from __future__ import annotations

from datetime import date

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from models import tables
from models.usage import ingest, verify
from tests.test_db_guards import allowed
from tests.test_usage import NOW, acme, ev

__all__ = ["acme"]

REFUSED = r"counted usage is immutable|append-only"


def refused(db: Session, statement: str) -> None:
    with pytest.raises(sa.exc.DBAPIError, match=REFUSED), db.begin_nested():
        db.execute(sa.text(statement))


@pytest.fixture
def counted(db: Session, acme: tables.Organization) -> tables.Organization:
    ingest.ensure_partitions(db, now=NOW)
    result = ingest.record_usage(db, [ev("e1", quantity="5"), ev("e2", quantity="7")], now=NOW)
    assert result.accepted == 2
    return acme


def partition() -> str:
    return f"usage_events_{NOW:%Y_%m}"


HOLES = [
    "DELETE FROM usage_event_ids",
    "UPDATE usage_event_ids SET event_id = event_id || '-x'",
    "UPDATE usage_event_ids SET payload_sha256 = '\\x00'",
    "TRUNCATE usage_event_ids",
    "TRUNCATE usage_event_ids CASCADE",
    "DELETE FROM usage_events",
    "UPDATE usage_events SET quantity = quantity * 2",
    "UPDATE usage_events SET invoice_id = invoice_id + 1",
    "TRUNCATE usage_events",
    f"DELETE FROM {partition()}",
    f"UPDATE {partition()} SET quantity = 0",
    f"TRUNCATE {partition()}",
    "TRUNCATE usage_events_default",
]


@pytest.mark.parametrize("statement", HOLES)
def test_counted_usage_cannot_be_changed_by_raw_sql(
    db: Session, counted: tables.Organization, statement: str
) -> None:
    refused(db, statement)
    assert db.execute(sa.text("SELECT count(*) FROM usage_event_ids")).scalar_one() == 2
    assert db.execute(sa.text("SELECT sum(quantity) FROM usage_events")).scalar_one() == 12
    assert verify.verify(db) == []


def test_finalized_invoices_events_cannot_be_doubled(
    db: Session, counted: tables.Organization
) -> None:
    from models.invoices import lifecycle

    draft = db.execute(sa.text("SELECT invoice_id FROM usage_drafts")).scalar_one()
    lifecycle.finalize(db, db.get_one(tables.Invoice, draft), now=NOW, rollup_shards=4)
    refused(db, "UPDATE usage_events SET quantity = quantity * 2")
    assert verify.verify(db) == []


def test_the_audited_path_may_and_leaves_a_trace(db: Session, counted: tables.Organization) -> None:
    with db.begin_nested():
        db.execute(sa.text("INSERT INTO usage_audit (reason) VALUES ('repair: ticket 123')"))
        db.execute(sa.text("DELETE FROM usage_event_ids WHERE event_id = 'e1'"))
    audit = db.execute(sa.text("SELECT reason, actor, txid FROM usage_audit")).one()
    assert audit.reason == "repair: ticket 123" and audit.actor
    # The trace is append-only.
    refused(db, "DELETE FROM usage_audit")
    refused(db, "UPDATE usage_audit SET reason = 'nothing to see'")
    refused(db, "TRUNCATE usage_audit")


def test_an_audit_row_of_another_transaction_opens_nothing(
    db: Session, counted: tables.Organization
) -> None:
    db.execute(sa.text("INSERT INTO usage_audit (reason, txid) VALUES ('forged', 1)"))
    refused(db, "DELETE FROM usage_event_ids")


def test_the_retention_job_detaches_a_month_on_the_audited_path(
    db: Session, counted: tables.Organization
) -> None:
    name = db.execute(
        sa.text("SELECT usage_events_detach_partition(:m, 'retention: archived to cold storage')"),
        {"m": date(NOW.year, NOW.month, 1)},
    ).scalar_one()
    assert name == partition()
    assert db.execute(sa.text("SELECT count(*) FROM usage_events")).scalar_one() == 0
    assert db.execute(sa.text("SELECT detail->>'detached' FROM usage_audit")).scalar_one() == name
    # The detached table keeps its TRUNCATE guard: the next transaction needs its own audit row.
    assert db.execute(
        sa.text("SELECT count(*) FROM pg_trigger WHERE tgrelid = to_regclass(:n) AND tgname = "
                "'usage_events_truncate'"), {"n": name}
    ).scalar_one() == 1  # fmt: skip


def test_a_new_month_moves_the_default_partitions_rows_on_the_audited_path(
    db: Session, acme: tables.Organization
) -> None:
    # No partition for NOW's month yet: the DEFAULT partition takes the events.
    db.execute(
        sa.text("SELECT 1 FROM pg_class WHERE relname = :n"), {"n": partition()}
    )  # (a fresh database has partitions around today, not around NOW)
    if db.execute(sa.text("SELECT to_regclass(:n)"), {"n": partition()}).scalar_one():
        pytest.skip("the month already has a partition")
    assert ingest.record_usage(db, [ev("d1")], now=NOW).accepted == 1
    assert db.execute(sa.text("SELECT count(*) FROM usage_events_default")).scalar_one() == 1
    ingest.ensure_partitions(db, now=NOW, months_ahead=0)
    assert db.execute(sa.text("SELECT count(*) FROM usage_events_default")).scalar_one() == 0
    assert db.execute(sa.text(f"SELECT count(*) FROM {partition()}")).scalar_one() == 1
    assert "DEFAULT" in db.execute(sa.text("SELECT reason FROM usage_audit")).scalar_one()


def test_ingest_never_needs_the_audited_path(db: Session, counted: tables.Organization) -> None:
    # Duplicates, conflicts and late refusals (a period closed under the batch) write no audit.
    ingest.record_usage(db, [ev("e1", quantity="5"), ev("e2", quantity="8")], now=NOW)
    assert db.execute(sa.text("SELECT count(*) FROM usage_audit")).scalar_one() == 0
    allowed(db, "SELECT 1")
