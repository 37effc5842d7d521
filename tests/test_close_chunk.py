"""The set-based close of a chunk (models/close/chunk.py) and the driver's per-invoice fallback
(models/close/driver.py): a chunk costs a fixed number of statements whatever its size, a draft that
fails inside the chunk is isolated and recorded while the others finalize, numbers stay
gap-free, a draft finalized by hand after the claim is reported ALREADY, and a closer killed
inside a chunk's transaction leaves none of that chunk finalized. Real PostgreSQL."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import rollup, tables
from models.close import chunk, cycle, driver
from models.close.cycle import Outcome
from models.invoices import lifecycle, numbering
from models.usage import verify
from settings import PROJECT_ROOT
from tests.api_helpers import QueryCounter
from tests.factories import SHARDS, make_invoice, make_org
from tests.test_close import (
    CLOSE_AT,
    FEB,
    _blocked_on_lock,
    _locked_drafts,
    _wait_for,
    assert_closed_exactly_once,
    clock,
    ev,
    invoices_of,
    lines_of,
    record,
    seed_prices,
    subscribe,
    world,
)


@pytest.fixture
def factory(db: Session) -> sessionmaker[Session]:
    """Sessions on the test's connection (its commits are savepoints), as in test_close."""
    return sessionmaker(bind=db.connection(), class_=Session, expire_on_commit=False,
                        join_transaction_mode="create_savepoint")  # fmt: skip


def _orgs_with_usage(db: Session, n: int, *, prefix: str) -> list[tables.Organization]:
    orgs = [make_org(db, slug=f"{prefix}{i:03d}") for i in range(n)]
    for o in orgs[::2]:
        subscribe(db, o)
    record(db, [ev(f"{prefix}-{i}", o.slug, quantity=str(1000 + i)) for i, o in enumerate(orgs)])
    return orgs


def _closing_statements(db: Session, factory: sessionmaker[Session], n: int, prefix: str) -> int:
    _orgs_with_usage(db, n, prefix=prefix)
    db.commit()
    bind = db.get_bind()
    engine = bind.engine if isinstance(bind, sa.Connection) else bind
    with QueryCounter(engine) as counted:
        done = driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS, chunk=500)
    assert done.counts[Outcome.FINALIZED] == n and done.finished
    return len(counted.statements)


def test_a_chunk_costs_a_fixed_number_of_statements_whatever_its_size(
    db: Session, factory: sessionmaker[Session]
) -> None:
    seed_prices(db)
    small = _closing_statements(db, factory, 3, "s")
    big = _closing_statements(db, factory, 40, "b")
    # The per-invoice ORM path costs ~17 statements per draft (680 here); a set-based chunk
    # costs the same handful whether it holds 3 drafts or 40.
    assert big <= small + 4, (small, big)
    assert big <= 60, big
    for org_id in db.execute(sa.text("SELECT id FROM organizations")).scalars():
        (inv,) = invoices_of(db, org_id)
        assert inv.status == "open" and inv.number is not None and inv.number.endswith("-0001")
        lines = lines_of(db, inv.id)  # type: ignore[arg-type]
        assert inv.line_item_count == len(lines)
        assert inv.subtotal_cents == inv.total_cents == sum(r.amount_cents for r in lines)
        assert inv.finalized_at == CLOSE_AT and inv.due_date is not None
        sync = db.get(tables.InvoiceSync, inv.id)
        assert sync is not None and sync.state == "pending" and sync.next_attempt_at == CLOSE_AT
    plans = db.execute(sa.text("SELECT * FROM invoice_items WHERE kind = 'subscription'")).all()
    assert len(plans) == 2 + 20 and all(p.amount_cents == 2900 for p in plans)
    assert all(p.description == "Support plan, February 2026" for p in plans)
    assert rollup.verify(db) == [] and verify.verify(db) == []
    run = cycle.get_run(db, FEB)
    assert run is not None and (run.drafts, run.finalized, run.failed) == (43, 43, 0)


def test_a_draft_failing_inside_the_chunk_is_isolated_and_the_others_finalize(
    db: Session, factory: sessionmaker[Session]
) -> None:
    """An error the chunk cannot foresee (here a trigger refusing one outbox row) rolls the chunk
    back; the driver closes its drafts one by one, so only that draft fails, and it is recorded."""
    seed_prices(db)
    orgs = _orgs_with_usage(db, 6, prefix="f")
    victim = invoices_of(db, orgs[2].id)[0]  # type: ignore[arg-type]
    db.execute(
        sa.text(
            "CREATE FUNCTION refuse_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NEW.invoice_id = {victim.id} THEN RAISE EXCEPTION 'refused by the test'; END IF; "
            "RETURN NEW; END $$; CREATE TRIGGER refuse_one BEFORE INSERT ON invoice_sync "
            "FOR EACH ROW EXECUTE FUNCTION refuse_one()"
        )
    )
    db.commit()

    done = driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS)

    assert (done.counts[Outcome.FINALIZED], done.counts[Outcome.FAILED]) == (5, 1)
    (inv,) = invoices_of(db, victim.organization_id)
    assert inv.status == "draft" and inv.number is None
    assert [r.kind for r in lines_of(db, inv.id)] == ["usage"]  # no half close: no plan line
    row = db.get(tables.BillingRunInvoice, inv.id)
    assert row is not None and row.outcome == "failed" and row.error_code == "INTERNAL_ERROR"
    assert row.error_message is not None and "refused by the test" in row.error_message
    others = [invoices_of(db, o.id)[0] for o in orgs if o.id != victim.organization_id]  # type: ignore[arg-type]
    assert all(i.status == "open" and (i.number or "").endswith("-0001") for i in others)
    assert db.execute(sa.text("SELECT count(*) FROM invoice_sync")).scalar_one() == 5
    assert (
        db.execute(
            sa.text("SELECT last_number FROM invoice_number_sequences WHERE organization_id = :o"),
            {"o": victim.organization_id},
        ).first()
        is None
    )  # its number was given back with the rollback
    assert rollup.verify(db) == []
    run = cycle.get_run(db, FEB)
    assert run is not None and (run.finalized, run.failed) == (5, 1)
    assert run.last_error is not None and "refused by the test" in run.last_error


def test_numbers_continue_gap_free_after_earlier_invoices(
    db: Session, factory: sessionmaker[Session]
) -> None:
    seed_prices(db)
    veteran, newcomer = make_org(db, slug="veteran"), make_org(db, slug="newcomer")
    for month in (11, 12):
        make_invoice(db, veteran, status="open", period_start=datetime(2025, month, 1).date(),
                     period_end=datetime(2025 + month // 12, month % 12 + 1, 1).date())  # fmt: skip
    record(db, [ev("v", "veteran"), ev("n", "newcomer")])
    db.commit()

    driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS)

    assert veteran.id is not None and newcomer.id is not None
    assert [i.number for i in invoices_of(db, veteran.id)] == [
        "VETERAN-0001", "VETERAN-0002", "VETERAN-0003",
    ]  # fmt: skip
    assert [i.number for i in invoices_of(db, newcomer.id)] == ["NEWCOMER-0001"]


def test_a_draft_finalized_by_hand_after_the_claim_is_reported_already(db: Session) -> None:
    seed_prices(db)
    orgs = _orgs_with_usage(db, 3, prefix="h")
    ids = [invoices_of(db, o.id)[0].id for o in orgs]  # type: ignore[arg-type]
    by_hand = db.get_one(tables.Invoice, ids[1])
    lifecycle.finalize(db, by_hand, now=CLOSE_AT, rollup_shards=SHARDS)
    empty_org = make_org(db, slug="hempty")
    empty = make_invoice(db, empty_org, lines=0)
    assert empty.id is not None
    db.add(tables.UsageDraft(organization_id=empty_org.id, period_start=FEB, invoice_id=empty.id))
    db.flush()

    closed = chunk.close_drafts(
        db,
        [*ids, empty.id],
        now=CLOSE_AT,
        rollup_shards=SHARDS,  # type: ignore[list-item]
    )

    assert closed.outcomes == {
        ids[0]: Outcome.FINALIZED, ids[1]: Outcome.ALREADY, ids[2]: Outcome.FINALIZED,
        empty.id: Outcome.SKIPPED,
    }  # fmt: skip
    assert closed.isolated == []
    assert db.execute(sa.text("SELECT count(*) FROM invoice_sync")).scalar_one() == 3
    skipped = db.get(tables.BillingRunInvoice, empty.id)
    assert skipped is not None and skipped.outcome == "skipped"
    assert db.get_one(tables.Invoice, empty.id, populate_existing=True).status == "draft"
    assert rollup.verify(db) == []


def test_a_draft_whose_plan_has_no_price_is_left_to_the_per_invoice_path(db: Session) -> None:
    """A failure the chunk can foresee is not written at all: the draft is handed back as
    isolated (the driver closes it alone, which records the coded error), the rest finalize."""
    seed_prices(db)
    orgs = _orgs_with_usage(db, 3, prefix="p")
    broken = orgs[1]
    assert broken.id is not None
    db.add(tables.Subscription(organization_id=broken.id, product="unpriced-plan",
                               description="Mystery", quantity=1, since=FEB))  # fmt: skip
    db.flush()
    ids = [invoices_of(db, o.id)[0].id for o in orgs]  # type: ignore[arg-type]

    closed = chunk.close_drafts(db, ids, now=CLOSE_AT, rollup_shards=SHARDS)  # type: ignore[arg-type]

    assert closed.isolated == [ids[1]]
    assert closed.outcomes == {ids[0]: Outcome.FINALIZED, ids[2]: Outcome.FINALIZED}
    assert invoices_of(db, broken.id)[0].status == "draft"
    assert [r.kind for r in lines_of(db, ids[1])] == ["usage"]  # type: ignore[arg-type]


KILLED_IN_CHUNK = """
import os
from datetime import UTC, date, datetime
from models.close import driver
from models.db import make_engine, session_factory
factory = session_factory(make_engine(os.environ["DATABASE_URL"], pool_size=3))
driver.run(factory, date(2026, 2, 1), clock=lambda: datetime(2026, 3, 1, 3, tzinfo=UTC),
          rollup_shards=4, chunk=5)
"""


def test_a_closer_killed_inside_a_chunk_leaves_none_of_that_chunk_finalized(
    committed: sessionmaker[Session], database_url: str
) -> None:
    """The closer waits inside its second chunk's transaction for a draft an ingest holds; it
    is SIGKILLed there: the first chunk stays finalized, nothing of the second is, and the next
    run finishes the rest exactly once."""
    org_ids = world(committed, 20)
    holder = committed()
    holder.begin()
    seventh = invoices_of(holder, org_ids[6])[0].id
    holder.execute(sa.text("SELECT 1 FROM invoices WHERE id = :i FOR NO KEY UPDATE"),
                   {"i": seventh})  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_IN_CHUNK],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
    )
    try:
        _wait_for(lambda: _blocked_on_lock(committed))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        holder.rollback()
        holder.close()
    _wait_for(lambda: _locked_drafts(committed) == 0)
    with committed() as s:
        open_ = s.execute(sa.text("SELECT count(*) FROM invoices WHERE status = 'open'"))
        assert open_.scalar_one() == 5  # the first chunk; none of the second
        assert s.execute(sa.text("SELECT count(*) FROM invoice_sync")).scalar_one() == 5

    resumed = driver.run(committed, FEB, clock=lambda: datetime(2026, 3, 1, 4, tzinfo=UTC),
                        rollup_shards=SHARDS)  # fmt: skip

    assert resumed.counts[Outcome.FINALIZED] == 15 and resumed.finished
    with committed() as s:
        assert_closed_exactly_once(s, org_ids)


# --- the close's enqueue: capped at the sweeper's queue depth ---------------------------------


def test_the_close_nudges_workers_only_up_to_the_queue_depth_cap(redis_url: str) -> None:
    """50,000 finalized drafts must not become 50,000 queued messages (~1 ms each to publish,
    and far beyond what the sweeper would ever queue): the close's enqueue tops the real queue
    up to max_queue_depth, re-reading its depth now and then, and leaves the rest to the
    sweeper (their outbox rows are due)."""
    import redis

    from sync import sweeper

    client = redis.Redis.from_url(redis_url)
    queue = f"test-close-cap-{os.getpid()}"
    client.delete(queue)
    try:
        nudge = sweeper.capped_enqueue(
            lambda invoice_id: client.rpush(queue, invoice_id),
            lambda: sweeper.queue_depth(client, queue),
            max_depth=50,
            every=10,
        )
        for i in range(200):
            nudge(i)
        assert sweeper.queue_depth(client, queue) == 50
        client.lpop(queue, 30)  # workers drain some: the next nudges fill the room again
        for i in range(200, 240):
            nudge(i)
        assert sweeper.queue_depth(client, queue) == 50
    finally:
        client.delete(queue)


def test_billing_close_period_enqueues_the_syncs_on_the_configured_queue(
    committed: sessionmaker[Session], database_url: str, redis_url: str
) -> None:
    """The CLI closes the period and nudges the sync workers on the configured broker and
    queue (it used to publish to Celery's unconfigured default broker, failing silently)."""
    import redis

    from sync import sweeper

    org_ids = world(committed, 3)
    queue = f"test-close-cli-{os.getpid()}"
    client = redis.Redis.from_url(redis_url)
    client.delete(queue)
    try:
        done = subprocess.run(
            [sys.executable, "cli.py", "close-period", "--period", "2026-02", "--quiet"],
            cwd=PROJECT_ROOT,
            env={
                **os.environ,
                "DATABASE_URL": database_url,
                "REDIS_URL": redis_url,
                "BILLING_SYNC_QUEUE": queue,
            },
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "3 finalized" in done.stdout
        assert sweeper.queue_depth(client, queue) == 3
    finally:
        client.delete(queue)
    with committed() as s:
        assert_closed_exactly_once(s, org_ids)


def test_numbers_for_many_invoices_are_consecutive_per_organization(db: Session) -> None:
    """One org can appear more than once in a list (two drafts of one organization): each gets
    the next number in list order, and the single-invoice path continues after them."""
    a, b = make_org(db, slug="alpha"), make_org(db, slug="beta")
    assert a.id is not None and b.id is not None
    numbers = numbering.next_invoice_numbers(db, [(a.id, "ALPHA"), (b.id, "BETA"), (a.id, "ALPHA")])
    assert numbers == ["ALPHA-0001", "BETA-0001", "ALPHA-0002"]
    assert numbering.next_invoice_number(db, a.id, "ALPHA") == "ALPHA-0003"
    assert numbering.next_invoice_numbers(db, []) == []


# --- drafts for subscribed organizations without usage ----------------------------------------


def _subscribed_without_usage(db: Session, n: int) -> None:
    db.execute(
        sa.text(
            "INSERT INTO organizations (public_id, slug, name, billing_email, invoice_prefix, "
            "default_currency) SELECT 'org_q' || g, 'q' || g, 'Q ' || g, 'ap@q' || g || "
            "'.example', 'Q' || g, 'USD' FROM generate_series(1, :n) g"
        ),
        {"n": n},
    )
    db.execute(
        sa.text(
            "INSERT INTO subscriptions (organization_id, product, description, quantity, since) "
            "SELECT id, 'support-plan', 'Support plan', 1, '2025-01-01' FROM organizations "
            "WHERE slug LIKE 'q%'"
        )
    )


def _advisory_locks_held(db: Session) -> int:
    return int(
        db.execute(
            sa.text("SELECT count(*) FROM pg_locks WHERE pid = pg_backend_pid() "
                    "AND locktype = 'advisory'")
        ).scalar_one()
    )  # fmt: skip


def test_drafts_of_subscribed_organizations_are_created_in_bounded_batches(
    db: Session, factory: sessionmaker[Session]
) -> None:
    """50,000 subscribed organizations without usage used to get their drafts in the run's
    first transaction, one ORM draft and one advisory lock each: PostgreSQL's lock table
    (max_locks_per_transaction x max_connections, 6,400 here) ran out ("out of shared memory")
    and the close could not start. Now: batches, each its own transaction, a handful of
    statements and at most `limit` advisory locks."""
    seed_prices(db)
    _subscribed_without_usage(db, 250)
    bind = db.get_bind()
    engine = bind.engine if isinstance(bind, sa.Connection) else bind
    made = []
    for _ in range(4):
        before = _advisory_locks_held(db)  # the test's outer transaction keeps earlier ones
        with QueryCounter(engine) as counted:
            made.append(cycle.create_missing_drafts(db, FEB, now=CLOSE_AT, limit=100))
        assert _advisory_locks_held(db) - before <= 100
        assert len(counted.statements) <= 6, counted.statements
        db.commit()  # a savepoint here; in driver.run, a transaction per batch
    assert made == [100, 100, 50, 0]
    drafts = db.execute(
        sa.text("SELECT count(*), count(DISTINCT d.organization_id) FROM usage_drafts d JOIN "
                "invoices i ON i.id = d.invoice_id WHERE d.period_start = :p AND i.status = "
                "'draft' AND i.period_end = '2026-03-01' AND i.currency = 'USD'"), {"p": FEB}
    ).one()  # fmt: skip
    assert tuple(drafts) == (250, 250)

    done = driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS)

    assert done.counts[Outcome.FINALIZED] == 250 and done.finished
    totals = db.execute(
        sa.text("SELECT count(*), min(total_cents), max(total_cents) FROM invoices "
                "WHERE status = 'open'")
    ).one()  # fmt: skip
    assert tuple(totals) == (250, 2900, 2900)
    assert rollup.verify(db) == []
