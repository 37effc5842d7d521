"""models/rollup.py: the monthly rollup equals a recomputation from the invoices, under concurrency
and in every lifecycle path (docs/rollup.md), and its SQL and Python agree on the shard."""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable
from datetime import UTC, date, datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
    run_state_machine_as_test,
)
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import rollup, tables
from models.errors import InvalidTransition
from models.invoices import lifecycle
from models.rollup import PLATFORM_SCOPE
from tests.factories import NOW, SHARDS, make_invoice, make_org

THREADS = 8
OPS_PER_THREAD = 20


def _summary(
    s: Session, scope_id: int, years: list[int]
) -> dict[tuple[str, str], tuple[int, int, int]]:
    return {
        (m.label, m.currency): (m.invoice_count, m.subtotal_cents, m.total_cents)
        for m in rollup.monthly_summary(s, scope_id=scope_id, years=years)
    }


def _drafts(factory: sessionmaker[Session], count: int) -> list[int]:
    """Committed one-line drafts over 4 organizations, 3 currencies and 3 months."""
    ids: list[int] = []
    with factory() as s, s.begin():
        orgs = [make_org(s, currency=c) for c in ("USD", "EUR", "GBP", "USD")]
        for i in range(count):
            org = orgs[i % len(orgs)]
            month = 1 + i % 3
            inv = make_invoice(
                s,
                org,
                lines=1,
                currency=("USD", "EUR", "GBP")[i % 3],
                period_start=date(2026, month, 1),
                period_end=date(2026, month + 1, 1),
                unit_price=str(100 + i),
            )
            assert inv.id is not None
            ids.append(inv.id)
    return ids


def _in_threads(work: Callable[[int], None]) -> None:
    errors: list[BaseException] = []

    def target(n: int) -> None:
        try:
            work(n)
        except BaseException as e:  # re-raised in the main thread below
            errors.append(e)

    threads = [threading.Thread(target=target, args=(n,)) for n in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors


def _finalize_and_void(factory: sessionmaker[Session], ids: list[int]) -> Callable[[int], None]:
    def work(n: int) -> None:
        mine = ids[n::THREADS]
        with factory() as s:
            for k, invoice_id in enumerate(mine):
                with s.begin():
                    inv = lifecycle.get_for_update(s, invoice_id)
                    lifecycle.finalize(s, inv, now=NOW, rollup_shards=SHARDS)
                if k % 3 == 0:  # a third are voided in a transaction of their own
                    with s.begin():
                        inv = lifecycle.get_for_update(s, invoice_id)
                        lifecycle.void(s, inv, now=NOW, rollup_shards=SHARDS)
                elif k % 3 == 1:
                    with s.begin():
                        inv = lifecycle.get_for_update(s, invoice_id)
                        lifecycle.mark_paid(s, inv, now=NOW, paid_on=lifecycle.PaidOn.HERE)

    return work


def test_concurrent_finalizers_and_voids_keep_the_rollup_exact(
    committed: sessionmaker[Session],
) -> None:
    ids = _drafts(committed, THREADS * OPS_PER_THREAD)
    _in_threads(_finalize_and_void(committed, ids))
    with committed() as s:
        assert rollup.verify(s) == []
        counted = s.execute(
            sa.text("SELECT count(*) FROM invoices WHERE status IN ('open', 'paid')")
        ).scalar_one()
        summary = _summary(s, PLATFORM_SCOPE, [2026])
        assert sum(n for n, _, _ in summary.values()) == counted > 0


def test_rebuild_while_writers_finalize(committed: sessionmaker[Session]) -> None:
    ids = _drafts(committed, THREADS * 10)
    writers = threading.Thread(target=_in_threads, args=(_finalize_and_void(committed, ids),))
    writers.start()
    rebuilt = 0
    while writers.is_alive() or rebuilt == 0:
        with committed() as s, s.begin():
            rollup.rebuild(s, shards=SHARDS)
        rebuilt += 1
    writers.join()
    with committed() as s:
        assert rollup.verify(s) == []
        assert s.execute(sa.text("SELECT count(*) FROM invoice_sync")).scalar_one() == len(ids)


def _rows(s: Session) -> list[tuple[object, ...]]:
    """Every non-empty rollup row, shard included (verify() sums the shards away)."""
    return [
        tuple(r)
        for r in s.execute(
            sa.text(
                "SELECT scope_id, month, currency, shard, invoice_count, subtotal_cents, "
                "total_cents FROM invoice_monthly_rollups WHERE invoice_count <> 0 "
                "OR subtotal_cents <> 0 OR total_cents <> 0 ORDER BY 1, 2, 3, 4"
            )
        )
    ]


def test_counted_statuses_are_the_finalized_ones() -> None:
    """docs/rollup.md: drafts and voids never count; the SQL is built from the same tuple."""
    assert set(rollup.COUNTED_STATUSES) == {"open", "paid", "uncollectible"}
    assert rollup.counted_sql("i.status") == "i.status IN ('open', 'paid', 'uncollectible')"


def test_rebuild_puts_every_invoice_in_the_shard_apply_delta_chose(db: Session) -> None:
    """The shard formula exists twice, in Python (apply_delta) and in SQL (rebuild and the
    bulk loader): both must give every row the same shard, or a rebuild would move counters
    between rows (harmless to reads, but it would hide a diverging formula)."""
    org = make_org(db)
    for status in ("open", "paid", "uncollectible", "void", "draft") * 3:
        make_invoice(db, org, status=status, lines=1)
    incremental = _rows(db)
    assert len({shard for (scope, *_, shard, _n, _s, _t) in incremental if scope == 0}) > 1
    assert [
        rollup.platform_shard(invoice_id, SHARDS) for invoice_id in (0, 1, 5, SHARDS * 7 + 3)
    ] == [0, 1, 5 % SHARDS, 3]
    rollup.rebuild(db, shards=SHARDS)
    assert _rows(db) == incremental


def test_months_without_invoices_are_zeros(db: Session) -> None:
    org = make_org(db)
    make_invoice(db, org, status="open", period_start=date(2025, 3, 1), period_end=date(2025, 4, 1))
    rows = rollup.monthly_summary(db, scope_id=org.id or 0, years=[2025])
    assert [r.label for r in rows] == [f"2025-{m:02d}" for m in range(1, 13)]
    assert [r.invoice_count for r in rows] == [0, 0, 1, *[0] * 9]
    both = rollup.monthly_summary(db, scope_id=org.id or 0, years=[2024, 2025])
    assert len(both) == 24 and sum(r.invoice_count for r in both) == 1


def test_new_year_boundary_lands_in_each_month(db: Session) -> None:
    """A period starting Dec 31 belongs to December, one starting Jan 1 00:00 UTC to January,
    whatever the finalize time."""
    org = make_org(db)
    new_year = datetime(2026, 1, 1, 0, 0, tzinfo=UTC)
    dec = make_invoice(
        db,
        org,
        status="open",
        period_start=date(2025, 12, 31),
        period_end=date(2026, 1, 1),
        now=new_year,
    )
    jan = make_invoice(
        db,
        org,
        status="open",
        period_start=date(2026, 1, 1),
        period_end=date(2026, 1, 2),
        now=datetime(2025, 12, 31, 23, 59, 59, tzinfo=UTC),
    )
    summary = _summary(db, org.id or 0, [2025, 2026])
    assert summary[("2025-12", "USD")] == (1, dec.subtotal_cents, dec.total_cents)
    assert summary[("2026-01", "USD")] == (1, jan.subtotal_cents, jan.total_cents)
    assert summary[("2025-11", "USD")] == summary[("2026-02", "USD")] == (0, 0, 0)
    assert rollup.verify(db) == []


def test_totals_above_2_pow_31_are_exact(db: Session) -> None:
    org = make_org(db)
    # 2 x 1,500,000,000.5 cents = 3,000,000,001 cents per invoice: past int32 on its own.
    a = make_invoice(db, org, status="open", lines=2, unit_price="1000000000.25")
    b = make_invoice(db, org, status="paid", lines=2, unit_price="1000000000.25")
    assert a.subtotal_cents == b.subtotal_cents > 2**31
    expected = a.subtotal_cents + b.subtotal_cents
    for scope in (PLATFORM_SCOPE, org.id or 0):
        month = _summary(db, scope, [2026])[("2026-02", "USD")]
        assert month == (2, expected, expected)
    assert rollup.verify(db) == []


def test_lifecycle_deltas(db: Session) -> None:
    """Paid and uncollectible keep counting, void subtracts, drafts never count."""
    org = make_org(db, currency="EUR")
    draft = make_invoice(db, org, status="draft")
    opened = make_invoice(db, org, status="open")
    paid = make_invoice(db, org, status="paid")
    assert paid.status == "paid"
    bad = make_invoice(db, org, status="uncollectible")
    voided = make_invoice(db, org, status="void")
    assert draft.status == "draft" and voided.status == "void"

    def month() -> tuple[int, int, int]:
        return _summary(db, org.id or 0, [2026])[("2026-02", "EUR")]

    each = opened.subtotal_cents
    assert month() == (3, 3 * each, 3 * each)
    lifecycle.mark_paid(db, bad, now=NOW, paid_on=lifecycle.PaidOn.HERE)
    assert month() == (3, 3 * each, 3 * each)
    lifecycle.void(db, opened, now=NOW, rollup_shards=SHARDS)
    assert month() == (2, 2 * each, 2 * each)
    assert rollup.verify(db) == []


class RollupMachine(RuleBasedStateMachine):
    """Random walks over finalize / pay / uncollectible / void on a few invoices; the rollup
    must equal the recomputation after every step, and illegal moves must change nothing."""

    engine: sa.Engine
    invoice_ids = Bundle("invoices")
    _months = itertools.cycle(
        [(date(2026, 1, 1), date(2026, 2, 1)), (date(2026, 2, 1), date(2026, 3, 1))]
    )

    def __init__(self) -> None:
        super().__init__()
        self.conn = self.engine.connect()
        self.outer = self.conn.begin()
        self.s = Session(
            bind=self.conn, join_transaction_mode="create_savepoint", expire_on_commit=False
        )
        self.status: dict[int, str] = {}

    @initialize()
    def orgs(self) -> None:
        self.org_list = [make_org(self.s, currency="USD"), make_org(self.s, currency="EUR")]

    @rule(target=invoice_ids, org=st.integers(0, 1), lines=st.integers(1, 3))
    def draft(self, org: int, lines: int) -> int:
        start, end = next(self._months)
        inv = make_invoice(
            self.s, self.org_list[org], lines=lines, period_start=start, period_end=end
        )
        assert inv.id is not None
        self.status[inv.id] = "draft"
        return inv.id

    def _apply(self, invoice_id: int, to: str, allowed: tuple[str, ...]) -> None:
        inv = self.s.get_one(tables.Invoice, invoice_id)
        try:
            with self.s.begin_nested():
                if to == "open":
                    lifecycle.finalize(self.s, inv, now=NOW, rollup_shards=SHARDS)
                elif to == "paid":
                    lifecycle.mark_paid(self.s, inv, now=NOW, paid_on=lifecycle.PaidOn.HERE)
                elif to == "uncollectible":
                    lifecycle.mark_uncollectible(self.s, inv, now=NOW)
                else:
                    lifecycle.void(self.s, inv, now=NOW, rollup_shards=SHARDS)
        except InvalidTransition:
            assert self.status[invoice_id] not in allowed
            return
        assert self.status[invoice_id] in allowed
        self.status[invoice_id] = to

    @rule(invoice_id=invoice_ids)
    def finalize(self, invoice_id: int) -> None:
        self._apply(invoice_id, "open", ("draft",))

    @rule(invoice_id=invoice_ids)
    def pay(self, invoice_id: int) -> None:
        self._apply(invoice_id, "paid", ("open", "uncollectible"))

    @rule(invoice_id=invoice_ids)
    def uncollectible(self, invoice_id: int) -> None:
        self._apply(invoice_id, "uncollectible", ("open",))

    @rule(invoice_id=invoice_ids)
    def void(self, invoice_id: int) -> None:
        self._apply(invoice_id, "void", ("open", "uncollectible"))

    @invariant()
    def rollup_equals_recomputation(self) -> None:
        assert rollup.verify(self.s) == []

    @invariant()
    def platform_count_matches_model(self) -> None:
        counted = sum(1 for st_ in self.status.values() if st_ in rollup.COUNTED_STATUSES)
        summary = rollup.monthly_summary(self.s, scope_id=PLATFORM_SCOPE, years=[2026])
        assert sum(m.invoice_count for m in summary) == counted

    def teardown(self) -> None:
        self.s.close()
        self.outer.rollback()
        self.conn.close()


@pytest.mark.timeout(60)
def test_rollup_state_machine(engine: sa.Engine) -> None:
    machine = type("BoundRollupMachine", (RollupMachine,), {"engine": engine})
    run_state_machine_as_test(
        machine,
        settings=settings(
            max_examples=25,
            stateful_step_count=12,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow],
        ),
    )
