"""The month-end close (models/close/cycle.py, models/close/driver.py): recurring lines priced at the period
start, empty drafts skipped, one failure not stopping the others, exactly-once finalize with two
closers and with a closer SIGKILLed mid-way, and usage racing the close (on the invoice before
finalize, or late usage on the next draft: never lost, never twice). Real PostgreSQL; the
concurrency tests commit on separate connections."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import prices, tables
from models.close import chunk, cycle, driver
from models.close.cycle import Outcome
from models.usage import ingest, verify
from models.usage.ingest import UsageEventInput
from settings import PROJECT_ROOT
from tests.factories import SHARDS, make_invoice, make_org

FEB = date(2026, 2, 1)
MAR = date(2026, 3, 1)
IN_FEB = datetime(2026, 2, 20, 12, 0, tzinfo=UTC)
CLOSE_AT = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)  # after the 2 h grace
PRICES_FROM = datetime(2025, 12, 1, tzinfo=UTC)
CPU = Decimal("0.000027006173")


def clock() -> datetime:
    return CLOSE_AT


def seed_prices(s: Session) -> None:
    for product, unit, price in (
        ("machines-shared-cpu", "second", CPU),
        ("support-plan", "month", Decimal(2900)),
    ):
        prices.set_price(
            s, product=product, unit=unit, currency="USD", unit_price=price,
            effective_from=PRICES_FROM, now=PRICES_FROM,
        )  # fmt: skip


def ev(
    event_id: str, org: str, *, at: datetime = IN_FEB, quantity: str = "1000"
) -> UsageEventInput:
    return UsageEventInput(
        id=event_id, organization_slug=org, product="machines-shared-cpu", quantity=quantity,
        occurred_at=at, app="web", region="ams",
    )  # fmt: skip


def record(s: Session, events: list[UsageEventInput], *, now: datetime = IN_FEB) -> None:
    result = ingest.record_usage(s, events, now=now + timedelta(minutes=1))
    assert result.rejected == []


def subscribe(s: Session, org: tables.Organization, *, since: date = date(2025, 1, 1)) -> None:
    assert org.id is not None
    s.add(
        tables.Subscription(
            organization_id=org.id, product="support-plan", description="Support plan",
            quantity=Decimal(1), since=since,
        )
    )  # fmt: skip
    s.flush()


def invoices_of(s: Session, org_id: int) -> list[tables.Invoice]:
    return list(
        s.exec(  # type: ignore[call-overload]
            sa.select(tables.Invoice)
            .where(tables.Invoice.organization_id == org_id)  # type: ignore[arg-type]
            .order_by(tables.Invoice.id)  # type: ignore[arg-type]
            .execution_options(populate_existing=True)
        ).scalars()
    )


def lines_of(s: Session, invoice_id: int) -> list[Any]:
    return list(
        s.execute(
            sa.text("SELECT * FROM invoice_items WHERE invoice_id = :i ORDER BY id"),
            {"i": invoice_id},
        ).all()
    )


@pytest.fixture
def factory(db: Session) -> sessionmaker[Session]:
    """Sessions on the test's connection (its commits are savepoints): for the single-closer
    tests, which need the driver's transactions but no second connection."""
    return sessionmaker(bind=db.connection(), class_=Session, expire_on_commit=False,
                        join_transaction_mode="create_savepoint")  # fmt: skip


# --- one closer -----------------------------------------------------------------------------


def test_close_adds_the_plan_priced_at_the_period_start_and_finalizes(
    db: Session, factory: sessionmaker[Session]
) -> None:
    org = make_org(db, slug="acme")
    seed_prices(db)
    subscribe(db, org)
    # A new plan price from mid-February: February's plan is still billed at the old one.
    prices.set_price(
        db, product="support-plan", unit="month", currency="USD", unit_price="4900",
        effective_from=datetime(2026, 2, 15, tzinfo=UTC), now=datetime(2026, 2, 10, tzinfo=UTC),
    )  # fmt: skip
    record(db, [ev("a", "acme", quantity="1000000")])
    db.commit()

    done = driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS)

    assert done.finished and done.counts[Outcome.FINALIZED] == 1
    assert org.id is not None
    (inv,) = invoices_of(db, org.id)
    assert inv.status == "open" and inv.number == "ACME-0001" and inv.finalized_at == CLOSE_AT
    kinds = {r.kind: r for r in lines_of(db, inv.id)}  # type: ignore[arg-type]
    plan = kinds["subscription"]
    assert (plan.unit_price, plan.amount_cents, plan.unit) == (Decimal(2900), 2900, "month")
    assert (plan.period_start, plan.period_end) == (FEB, MAR)
    assert plan.description == "Support plan, February 2026"
    assert inv.total_cents == 2900 + kinds["usage"].amount_cents
    run = cycle.get_run(db, FEB)
    assert run is not None
    assert (run.drafts, run.finalized, run.skipped, run.failed) == (1, 1, 0, 0)
    assert run.finished_at == CLOSE_AT
    sync = db.get(tables.InvoiceSync, inv.id)
    assert sync is not None and sync.state == "pending"


def test_organizations_with_no_usage(db: Session, factory: sessionmaker[Session]) -> None:
    """A plan and no usage: an invoice of the plan alone. Neither: no invoice. An empty draft:
    not finalized as a zero invoice, left a draft (skipped), closed once usage lands on it."""
    seed_prices(db)
    planned, idle, empty = (make_org(db, slug=s) for s in ("planned", "idle", "empty"))
    subscribe(db, planned)
    assert empty.id is not None and idle.id is not None and planned.id is not None
    draft = make_invoice(db, empty, lines=0, period_start=FEB, period_end=MAR)
    assert draft.id is not None
    db.add(tables.UsageDraft(organization_id=empty.id, period_start=FEB, invoice_id=draft.id))
    db.commit()

    done = driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS)

    assert done.counts[Outcome.FINALIZED] == 1 and done.counts[Outcome.SKIPPED] == 1
    (plan_only,) = invoices_of(db, planned.id)
    assert plan_only.status == "open" and plan_only.total_cents == 2900
    assert invoices_of(db, idle.id) == []
    (still,) = invoices_of(db, empty.id)
    assert still.status == "draft" and still.line_item_count == 0
    run = cycle.get_run(db, FEB)
    assert run is not None and (run.finalized, run.skipped, run.failed) == (1, 1, 0)
    assert run.finished_at is not None
    # Running again changes nothing: the empty draft is not claimed again while it stays empty.
    again = driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS)
    assert again.done == 0 and again.finished
    # Usage lands on it (within its period, during the grace): the next run finalizes it.
    record(db, [ev("late-1", "empty", at=datetime(2026, 2, 28, 23, 0, tzinfo=UTC))],
           now=datetime(2026, 2, 28, 23, 30, tzinfo=UTC))  # fmt: skip
    db.commit()
    third = driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS)
    assert third.counts[Outcome.FINALIZED] == 1
    (closed,) = invoices_of(db, empty.id)
    assert closed.status == "open" and closed.number is not None
    run = cycle.get_run(db, FEB)
    assert run is not None and (run.finalized, run.skipped) == (2, 0)


def test_one_failure_is_recorded_and_does_not_stop_the_others(
    db: Session, factory: sessionmaker[Session]
) -> None:
    seed_prices(db)
    orgs = [make_org(db, slug=f"o{i}") for i in range(4)]
    record(db, [ev(f"e{i}", o.slug) for i, o in enumerate(orgs)])
    broken = orgs[1]
    assert broken.id is not None
    db.add(
        tables.Subscription(organization_id=broken.id, product="unpriced-plan",
                            description="Mystery plan", quantity=Decimal(1), since=FEB)
    )  # fmt: skip
    db.commit()

    done = driver.run(factory, FEB, clock=clock, rollup_shards=SHARDS)

    assert (done.counts[Outcome.FINALIZED], done.counts[Outcome.FAILED]) == (3, 1)
    assert done.finished  # nothing but the failure is left
    (inv,) = invoices_of(db, broken.id)
    assert inv.status == "draft" and inv.line_item_count == 1  # rolled back: no half close
    row = db.get(tables.BillingRunInvoice, inv.id)
    assert row is not None and row.outcome == "failed" and row.error_code == "UNKNOWN_PRODUCT"
    run = cycle.get_run(db, FEB)
    assert run is not None and (run.finalized, run.failed) == (3, 1)
    assert run.last_error is not None and "unpriced-plan" in run.last_error
    # The operator adds the price; the next run closes it, and the counters move with it.
    prices.set_price(db, product="unpriced-plan", unit="month", currency="USD", unit_price="100",
                     effective_from=PRICES_FROM, now=PRICES_FROM)  # fmt: skip
    db.commit()
    later = driver.run(factory, FEB, clock=lambda: CLOSE_AT + timedelta(hours=1),
                      rollup_shards=SHARDS)  # fmt: skip
    assert later.counts[Outcome.FINALIZED] == 1
    run = cycle.get_run(db, FEB)
    assert run is not None and (run.finalized, run.failed) == (4, 0)


def test_due_period_waits_for_the_grace() -> None:
    grace = timedelta(hours=2)
    assert cycle.due_period(datetime(2026, 3, 1, 1, 59, tzinfo=UTC), grace=grace) == date(
        2026, 1, 1
    )
    assert cycle.due_period(datetime(2026, 3, 1, 2, 0, tzinfo=UTC), grace=grace) == FEB
    assert cycle.due_period(datetime(2026, 1, 15, tzinfo=UTC), grace=grace) == date(2025, 12, 1)
    assert cycle.parse_period("2026-11") == date(2026, 11, 1)


# --- concurrency: committed data, separate connections ----------------------------------------


def world(factory: sessionmaker[Session], n: int) -> list[int]:
    with factory() as s, s.begin():
        seed_prices(s)
        orgs = [make_org(s, slug=f"c{i:03d}") for i in range(n)]
        for o in orgs[::3]:
            subscribe(s, o)
        record(s, [ev(f"w{i}", o.slug, quantity=str(100 + i)) for i, o in enumerate(orgs)])
        return [o.id for o in orgs if o.id is not None]


def assert_closed_exactly_once(s: Session, org_ids: list[int]) -> None:
    for org_id in org_ids:
        invs = invoices_of(s, org_id)
        assert [i.status for i in invs] == ["open"], org_id
    numbers = s.execute(
        sa.text(
            "SELECT o.invoice_prefix, i.number, q.last_number FROM invoices i "
            "JOIN organizations o ON o.id = i.organization_id "
            "JOIN invoice_number_sequences q ON q.organization_id = o.id"
        )
    ).all()
    assert all(r.number == f"{r.invoice_prefix}-0001" and r.last_number == 1 for r in numbers)
    dup = s.execute(sa.text("SELECT count(*), count(DISTINCT invoice_id) FROM invoice_sync")).one()
    assert dup[0] == dup[1] == len(org_ids)
    assert verify.verify(s) == []
    from models import rollup

    assert rollup.verify(s) == []


def test_two_concurrent_closers_share_the_work_and_finalize_each_draft_once(
    committed: sessionmaker[Session],
) -> None:
    org_ids = world(committed, 40)
    b_did_one = threading.Event()
    a_holding = threading.Event()
    results: dict[str, driver.Progress] = {}
    errors: list[BaseException] = []

    def a_hook(p: driver.Progress, invoice_id: int, o: Outcome) -> None:
        # A holds its first chunk until B has closed something: B must get other drafts.
        if p.done == 1:
            a_holding.set()
            assert b_did_one.wait(30), "the second closer got no work while the first held a chunk"

    def b_hook(p: driver.Progress, invoice_id: int, o: Outcome) -> None:
        b_did_one.set()

    def closer(name: str, hook: Any) -> None:
        try:
            results[name] = driver.run(committed, FEB, clock=clock, rollup_shards=SHARDS,
                                      chunk=5, on_invoice=hook)  # fmt: skip
        except BaseException as e:
            errors.append(e)

    a = threading.Thread(target=closer, args=("a", a_hook))
    a.start()
    # B starts once A holds its chunk (A is waiting in its hook). An event, not a probe of the
    # row locks: a SKIP LOCKED probe would itself take rows from under A's claim.
    assert a_holding.wait(30), "the first closer never claimed a chunk"
    b = threading.Thread(target=closer, args=("b", b_hook))
    b.start()
    a.join()
    b.join()
    assert errors == []
    fa, fb = (results[n].counts[Outcome.FINALIZED] for n in "ab")
    assert fa > 0 and fb > 0 and fa + fb == 40
    assert results["a"].counts[Outcome.ALREADY] + results["b"].counts[Outcome.ALREADY] == 0
    with committed() as s:
        assert_closed_exactly_once(s, org_ids)
        run = cycle.get_run(s, FEB)
        assert run is not None and run.finalized == 40 and run.finished_at is not None


def _locked_drafts(factory: sessionmaker[Session]) -> int:
    """Usage drafts of February held by some closer right now (SKIP LOCKED shows the others)."""
    with factory() as s, s.begin():
        free = s.execute(
            sa.text("SELECT count(*) FROM (SELECT 1 FROM usage_drafts WHERE period_start = :p "
                    "FOR UPDATE SKIP LOCKED) x"), {"p": FEB}
        ).scalar_one()  # fmt: skip
        total = s.execute(
            sa.text("SELECT count(*) FROM usage_drafts WHERE period_start = :p"), {"p": FEB}
        ).scalar_one()
    return int(total) - int(free)


def _wait_for(condition: Any, timeout: float = 30.0) -> None:
    """Poll a database condition (another process or thread's progress) until it holds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.02)


KILLED_CLOSER = """
import os, sys, time
from datetime import UTC, datetime
from models.close import driver
from models.close.cycle import Outcome
from models.db import make_engine, session_factory
from datetime import date
factory = session_factory(make_engine(os.environ["DATABASE_URL"], pool_size=3))
def hook(p, invoice_id, outcome):
    if p.done == 5:  # between two chunks: the first committed, the second not begun
        print("KILL ME", flush=True)
        time.sleep(600)
driver.run(factory, date(2026, 2, 1), clock=lambda: datetime(2026, 3, 1, 3, tzinfo=UTC),
          rollup_shards=4, chunk=5, on_invoice=hook)
"""


def test_a_closer_killed_between_two_chunks_is_resumed_by_the_next_run(
    committed: sessionmaker[Session], database_url: str
) -> None:
    org_ids = world(committed, 20)
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_CLOSER],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "PGAPPNAME": "killed-closer"},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "KILL ME"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # PostgreSQL ends the killed closer's sessions (and releases its claim) once it sees the
    # sockets close; wait for that rather than for a fixed time.
    _wait_for(lambda: _locked_drafts(committed) == 0)
    with committed() as s:
        assert (
            s.execute(sa.text("SELECT count(*) FROM invoices WHERE status = 'open'")).scalar() == 5
        )
        run = cycle.get_run(s, FEB)
        assert run is not None and run.finished_at is None

    resumed = driver.run(committed, FEB, clock=clock, rollup_shards=SHARDS)

    assert resumed.counts[Outcome.FINALIZED] == 15 and resumed.finished
    with committed() as s:
        assert_closed_exactly_once(s, org_ids)
        run = cycle.get_run(s, FEB)
        assert run is not None and (run.drafts, run.finalized, run.failed) == (20, 20, 0)


@pytest.fixture
def two_orgs(committed: sessionmaker[Session]) -> Iterator[tuple[int, int]]:
    with committed() as s, s.begin():
        seed_prices(s)
        a, b = make_org(s, slug="racer"), make_org(s, slug="other")
        record(s, [ev("r0", "racer"), ev("o0", "other")])
        assert a.id is not None and b.id is not None
        ids = (a.id, b.id)
    yield ids


def _blocked_on_lock(factory: sessionmaker[Session]) -> bool:
    with factory() as s:
        return bool(
            s.execute(
                sa.text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                        "AND datname = current_database()")
            ).scalar()
        )  # fmt: skip


DURING_CLOSE = datetime(2026, 3, 1, 2, 30, tzinfo=UTC)


def test_an_event_in_flight_when_the_close_begins_lands_on_the_invoice(
    committed: sessionmaker[Session], two_orgs: tuple[int, int]
) -> None:
    """The ingest holds the draft's lock first: the finalize waits for it, and the invoice
    includes the event."""
    racer, _ = two_orgs
    ingest_session = committed()
    ingest_session.begin()
    record(ingest_session, [ev("r1", "racer", at=datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
                               quantity="5000")], now=DURING_CLOSE)  # fmt: skip
    done: list[driver.Progress] = []
    t = threading.Thread(target=lambda: done.append(
        driver.run(committed, FEB, clock=clock, rollup_shards=SHARDS)))  # fmt: skip
    t.start()
    _wait_for(lambda: _blocked_on_lock(committed))
    ingest_session.commit()
    ingest_session.close()
    t.join()
    with committed() as s:
        (inv,) = invoices_of(s, racer)
        assert inv.status == "open"
        (line,) = lines_of(s, inv.id)  # type: ignore[arg-type]
        assert line.quantity == Decimal(6000) and inv.total_cents == line.amount_cents
        assert verify.verify(s) == []


def test_an_event_arriving_while_the_invoice_is_finalized_becomes_late_usage(
    committed: sessionmaker[Session], two_orgs: tuple[int, int]
) -> None:
    """The close holds the draft's lock first: the event waits, sees the invoice OPEN, and lands
    on March's draft as late usage of February: not lost, not on the finalized invoice."""
    racer, _ = two_orgs
    closing = committed()
    closing.begin()
    feb_id = invoices_of(closing, racer)[0].id
    assert feb_id is not None
    closed = chunk.close_invoice(closing, feb_id, now=CLOSE_AT, rollup_shards=SHARDS)
    assert closed.outcome == Outcome.FINALIZED
    errors: list[BaseException] = []

    def late() -> None:
        try:
            with committed() as s, s.begin():
                record(s, [ev("r2", "racer", at=datetime(2026, 2, 28, 23, 59, tzinfo=UTC),
                              quantity="7000")], now=DURING_CLOSE)  # fmt: skip
        except BaseException as e:
            errors.append(e)

    t = threading.Thread(target=late)
    t.start()
    _wait_for(lambda: _blocked_on_lock(committed))
    closing.commit()
    closing.close()
    t.join()
    assert errors == []
    with committed() as s:
        feb, mar = invoices_of(s, racer)
        assert (feb.status, feb.period_start, mar.status, mar.period_start) == (
            "open", FEB, "draft", MAR,
        )  # fmt: skip
        assert [r.quantity for r in lines_of(s, feb.id)] == [Decimal(1000)]  # type: ignore[arg-type]
        (late_line,) = lines_of(s, mar.id)  # type: ignore[arg-type]
        assert late_line.quantity == Decimal(7000) and late_line.period_start == FEB
        assert "late usage of 2026-02" in late_line.description
        assert verify.verify(s) == []


def test_events_streaming_during_a_close_are_each_counted_once(
    committed: sessionmaker[Session],
) -> None:
    """Threads post February events for every organization while two closers run: each event's
    quantity ends up on exactly one invoice (February's before its finalize, March's after)."""
    org_ids = world(committed, 12)
    stop = threading.Event()
    sent: list[int] = []
    errors: list[BaseException] = []

    def feeder(k: int) -> None:
        n = 0
        try:
            while not stop.is_set() and n < 40:
                with committed() as s, s.begin():
                    ingest.record_usage(
                        s,
                        [ev(f"f{k}-{n}-{i}", f"c{i:03d}", at=datetime(2026, 2, 28, 23, 0,
                            tzinfo=UTC), quantity="1") for i in range(12)],
                        now=DURING_CLOSE,
                    )  # fmt: skip
                sent.append(12)
                n += 1
        except BaseException as e:
            errors.append(e)

    feeders = [threading.Thread(target=feeder, args=(k,)) for k in range(2)]
    for f in feeders:
        f.start()
    closers = [
        threading.Thread(target=driver.run, args=(committed, FEB),
                         kwargs={"clock": clock, "rollup_shards": SHARDS, "chunk": 3})
        for _ in range(2)
    ]  # fmt: skip
    for c in closers:
        c.start()
    for c in closers:
        c.join()
    stop.set()
    for f in feeders:
        f.join()
    assert errors == []
    with committed() as s:
        total = s.execute(
            sa.text("SELECT sum(quantity) FROM invoice_items WHERE kind = 'usage'")
        ).scalar_one()
        initial = sum(100 + i for i in range(12))
        assert total == initial + sum(sent)
        events = s.execute(sa.text("SELECT sum(quantity) FROM usage_events")).scalar_one()
        assert events == total
        assert verify.verify(s) == []
        feb_open = s.execute(
            sa.text("SELECT count(*) FROM invoices WHERE period_start = :p AND status = 'open'"),
            {"p": FEB},
        ).scalar_one()
        assert feb_open == len(org_ids)


def test_finished_at_is_when_the_work_ended_not_the_last_tick(
    db: Session, factory: sessionmaker[Session]
) -> None:
    """Beat runs the close every few minutes; a tick that finds nothing to do must not move
    finished_at (23:20:06 became 23:22:40). A tick that does close something is a new finish."""
    seed_prices(db)
    planned, empty = make_org(db, slug="planned"), make_org(db, slug="empty")
    subscribe(db, planned)
    assert empty.id is not None
    draft = make_invoice(db, empty, lines=0, period_start=FEB, period_end=MAR)
    assert draft.id is not None
    db.add(tables.UsageDraft(organization_id=empty.id, period_start=FEB, invoice_id=draft.id))
    db.commit()
    ticks = [CLOSE_AT + timedelta(minutes=m) for m in (0, 2, 4)]

    for at in ticks:  # the first does the work, the next two find nothing
        driver.run(factory, FEB, clock=lambda at=at: at, rollup_shards=SHARDS)  # type: ignore[misc]
        run = cycle.get_run(db, FEB)
        assert run is not None
        assert run.finished_at == ticks[0], (at, run.finished_at)

    record(db, [ev("late-1", "empty", at=datetime(2026, 2, 28, 23, 0, tzinfo=UTC))],
           now=datetime(2026, 2, 28, 23, 30, tzinfo=UTC))  # fmt: skip
    db.commit()
    later = CLOSE_AT + timedelta(minutes=10)
    assert (
        driver.run(factory, FEB, clock=lambda: later, rollup_shards=SHARDS).counts[
            Outcome.FINALIZED
        ]
        == 1
    )
    run = cycle.get_run(db, FEB)
    assert run is not None and run.finished_at == later
    driver.run(factory, FEB, clock=lambda: later + timedelta(minutes=2), rollup_shards=SHARDS)
    run = cycle.get_run(db, FEB)
    assert run is not None and run.finished_at == later
