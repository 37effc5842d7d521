"""Usage ingestion against real PostgreSQL: duplicates and conflicts, the window, prices, late
usage, rejected events changing nothing, rounding once per line, and concurrency."""

from __future__ import annotations

import random
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import prices, tables
from models.errors import UsageLinesMetered
from models.invoices import lifecycle
from models.tables import LineItemKind
from models.usage import ingest, verify
from models.usage.ingest import UsageEventInput
from tests.conftest import truncate_all
from tests.factories import make_org, usage_line

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
PRICES_FROM = datetime(2026, 1, 1, tzinfo=UTC)
CPU_PRICE = Decimal("0.000027006173")  # cents per shared vCPU-second
PRICE_LIST = {
    "machines-shared-cpu": ("second", CPU_PRICE),
    "egress": ("GB", Decimal(2)),
    "volume-storage": ("GB-month", Decimal(15)),
    "half-cent": ("unit", Decimal("0.5")),
}
USAGE_TABLES = (
    "usage_events",
    "usage_event_ids",
    "usage_drafts",
    "invoices",
    "invoice_items",
    "prices",
)


def seed_prices(db: Session, *, at: datetime = PRICES_FROM) -> None:
    for product, (unit, price) in PRICE_LIST.items():
        prices.set_price(
            db,
            product=product,
            unit=unit,
            currency="USD",
            unit_price=price,
            effective_from=at,
            now=at,
        )


def ev(
    event_id: str | None = None,
    *,
    org: str = "acme",
    product: str = "machines-shared-cpu",
    quantity: Any = "10",
    at: Any = None,
    app: str | None = "web",
    region: str | None = "ams",
    metadata: Any = None,
) -> UsageEventInput:
    return UsageEventInput(
        id=event_id or uuid.uuid4().hex,
        organization_slug=org,
        product=product,
        quantity=quantity,
        occurred_at=at if at is not None else NOW - timedelta(hours=1),
        app=app,
        region=region,
        metadata=metadata,
    )


def usage_rows(db: Session, org_id: int | None = None) -> list[Any]:
    where = "WHERE l.price_id IS NOT NULL" + (" AND i.organization_id = :o" if org_id else "")
    return db.execute(
        sa.text(
            "SELECT l.*, i.period_start AS invoice_period, i.status AS invoice_status "
            "FROM invoice_items l JOIN invoices i ON i.id = l.invoice_id "
            f"{where} ORDER BY l.invoice_id, l.product, l.app, l.region, l.price_id, l.period_start"
        ),
        {"o": org_id},
    ).all()


def snapshot(db: Session) -> dict[str, list[tuple[Any, ...]]]:
    return {
        t: sorted((tuple(r) for r in db.execute(sa.text(f"SELECT * FROM {t}"))), key=repr)
        for t in USAGE_TABLES
    }


def half_even(q: Decimal, price: Decimal) -> int:
    return int((q * price).quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


@pytest.fixture
def acme(db: Session) -> tables.Organization:
    org = make_org(db, slug="acme")
    seed_prices(db)
    # Priced only from an hour after NOW: usage before that has no price.
    prices.set_price(
        db,
        product="gpu",
        unit="second",
        currency="USD",
        unit_price="0.1",
        effective_from=NOW + timedelta(hours=1),
        now=NOW,
    )
    return org


def test_events_aggregate_into_one_line_of_a_new_draft(
    db: Session, acme: tables.Organization
) -> None:
    result = ingest.record_usage(
        db, [ev(quantity="1000"), ev(quantity="2000.5"), ev(quantity="0.000000001")], now=NOW
    )
    assert (result.accepted, result.duplicates, result.rejected) == (3, 0, [])
    [line] = usage_rows(db, acme.id)
    total = Decimal("3000.500000001")
    assert line.quantity == total
    assert line.unit_price == CPU_PRICE and line.unit == "second" and line.kind == "usage"
    assert line.amount_cents == half_even(total, CPU_PRICE)
    assert (line.period_start, line.period_end) == (date(2026, 3, 1), date(2026, 4, 1))
    draft = db.get_one(tables.Invoice, line.invoice_id, populate_existing=True)
    assert draft.status == "draft" and (draft.period_start, draft.period_end) == (
        date(2026, 3, 1),
        date(2026, 4, 1),
    )
    assert draft.subtotal_cents == draft.total_cents == line.amount_cents
    assert draft.line_item_count == 1
    assert verify.verify(db) == []


def test_rounding_happens_once_per_line_not_per_event(
    db: Session, acme: tables.Organization
) -> None:
    # Per-event rounding would make three 0.5-cent events 0 + 0 + 0 (half-even) = 0 cents.
    ingest.record_usage(db, [ev(product="half-cent", quantity="1") for _ in range(3)], now=NOW)
    [line] = usage_rows(db, acme.id)
    assert (line.quantity, line.amount_cents) == (Decimal(3), 2)  # 1.5 -> 2
    ingest.record_usage(db, [ev(product="half-cent", quantity="2")], now=NOW)
    [line] = usage_rows(db, acme.id)
    assert (line.quantity, line.amount_cents) == (Decimal(5), 2)  # 2.5 -> 2, half to even
    draft = db.get_one(tables.Invoice, line.invoice_id, populate_existing=True)
    assert draft.subtotal_cents == 2


def test_lines_are_keyed_by_product_app_region(db: Session, acme: tables.Organization) -> None:
    ingest.record_usage(
        db,
        [
            ev(app="web", region="ams"),
            ev(app="web", region="fra"),
            ev(app="api", region="ams"),
            ev(app=None, region=None, product="egress", quantity="1.25"),
            ev(app=None, region=None, product="egress", quantity="1.25"),
        ],
        now=NOW,
    )
    rows = usage_rows(db, acme.id)
    assert sorted((r.product, r.app, r.region, r.quantity) for r in rows) == [
        ("egress", None, None, Decimal("2.5")),
        ("machines-shared-cpu", "api", "ams", Decimal(10)),
        ("machines-shared-cpu", "web", "ams", Decimal(10)),
        ("machines-shared-cpu", "web", "fra", Decimal(10)),
    ]
    assert verify.verify(db) == []


def test_duplicates_and_conflicts_in_one_batch(db: Session, acme: tables.Organization) -> None:
    result = ingest.record_usage(
        db,
        [
            ev("a", quantity="5"),
            ev("a", quantity="5.000"),  # same payload (the same number): a duplicate
            ev("a", quantity="6"),  # same id, other payload
            ev("b", quantity="1"),
        ],
        now=NOW,
    )
    assert (result.accepted, result.duplicates) == (2, 1)
    assert [(r.index, r.id, r.code, r.field) for r in result.rejected] == [
        (2, "a", "IDEMPOTENCY_CONFLICT", ("id",))
    ]
    [line] = usage_rows(db, acme.id)
    assert line.quantity == Decimal(6)


def test_duplicates_and_conflicts_across_batches_change_nothing(
    db: Session, acme: tables.Organization
) -> None:
    ingest.record_usage(db, [ev("a", quantity="5", metadata={"machine": "m1"})], now=NOW)
    before = snapshot(db)
    later = NOW + timedelta(days=3)
    again = ingest.record_usage(db, [ev("a", quantity="5", metadata={"machine": "m1"})], now=later)
    assert (again.accepted, again.duplicates, again.rejected) == (0, 1, [])
    other = ingest.record_usage(db, [ev("a", quantity="5", metadata={"machine": "m2"})], now=later)
    assert [r.code for r in other.rejected] == ["IDEMPOTENCY_CONFLICT"]
    assert snapshot(db) == before


def test_ids_are_per_organization(db: Session, acme: tables.Organization) -> None:
    make_org(db, slug="beta")
    result = ingest.record_usage(db, [ev("same"), ev("same", org="beta")], now=NOW)
    assert (result.accepted, result.duplicates, result.rejected) == (2, 0, [])


@pytest.mark.parametrize(
    ("offset", "accepted"),
    [
        (-timedelta(days=35), True),
        (-timedelta(days=35, microseconds=1), False),
        (timedelta(minutes=5), True),
        (timedelta(minutes=5, microseconds=1), False),
    ],
)
def test_window_edges(
    db: Session, acme: tables.Organization, offset: timedelta, accepted: bool
) -> None:
    result = ingest.record_usage(db, [ev(at=NOW + offset)], now=NOW)
    assert result.accepted == int(accepted)
    if not accepted:
        assert [(r.code, r.field) for r in result.rejected] == [("OUT_OF_WINDOW", ("occurredAt",))]


def test_midnight_on_the_first_belongs_to_the_new_month(
    db: Session, acme: tables.Organization
) -> None:
    now = datetime(2026, 3, 1, 0, 3, tzinfo=UTC)
    first = datetime(2026, 3, 1, tzinfo=UTC)
    ingest.record_usage(
        db,
        [
            ev(at=first),
            ev(at=first - timedelta(microseconds=1)),
            ev(at="2026-03-01T01:00:00+01:00"),
        ],
        now=now,
    )
    rows = usage_rows(db, acme.id)
    assert [(r.invoice_period, r.period_start, r.quantity) for r in rows] == [
        (date(2026, 2, 1), date(2026, 2, 1), Decimal(10)),  # 23:59:59.999999 UTC
        (date(2026, 3, 1), date(2026, 3, 1), Decimal(20)),  # 00:00 UTC, and 01:00+01:00
    ]
    events = db.execute(
        sa.text("SELECT tableoid::regclass::text AS part, occurred_at FROM usage_events")
    ).all()
    assert {e.part for e in events if e.occurred_at >= first} <= {
        "usage_events_2026_03",
        "usage_events_default",
    }


def test_a_price_change_mid_month_splits_the_line(db: Session, acme: tables.Organization) -> None:
    change = NOW + timedelta(hours=1)
    prices.set_price(
        db,
        product="machines-shared-cpu",
        unit="second",
        currency="USD",
        unit_price="0.00003",
        effective_from=change,
        now=NOW,
    )
    later = NOW + timedelta(hours=2)
    ingest.record_usage(
        db,
        [
            ev(at=change - timedelta(microseconds=1), quantity="100"),
            ev(at=change, quantity="200"),
            ev(at=change + timedelta(minutes=30), quantity="300"),
        ],
        now=later,
    )
    rows = usage_rows(db, acme.id)
    assert [(r.unit_price, r.quantity) for r in rows] == [
        (CPU_PRICE, Decimal(100)),
        (Decimal("0.00003"), Decimal(500)),
    ]
    assert len({r.invoice_id for r in rows}) == 1 and rows[0].price_id != rows[1].price_id
    assert verify.verify(db) == []


def test_late_usage_lands_on_the_current_draft_with_its_own_period(
    db: Session, acme: tables.Organization
) -> None:
    feb_now = datetime(2026, 2, 27, 12, tzinfo=UTC)
    ingest.record_usage(db, [ev(at=feb_now - timedelta(hours=1), quantity="100")], now=feb_now)
    [feb_line] = usage_rows(db, acme.id)
    feb = lifecycle.finalize(
        db, db.get_one(tables.Invoice, feb_line.invoice_id), now=NOW, rollup_shards=4
    )
    feb_total = feb.total_cents
    result = ingest.record_usage(
        db, [ev(at=datetime(2026, 2, 28, 23, tzinfo=UTC), quantity="50"), ev(quantity="7")], now=NOW
    )
    assert result.accepted == 2
    rows = [r for r in usage_rows(db, acme.id) if r.invoice_status == "draft"]
    assert [(r.invoice_period, r.period_start, r.period_end, r.quantity) for r in rows] == [
        (date(2026, 3, 1), date(2026, 2, 1), date(2026, 3, 1), Decimal(50)),
        (date(2026, 3, 1), date(2026, 3, 1), date(2026, 4, 1), Decimal(7)),
    ]
    assert "late usage of 2026-02" in rows[0].description
    db.refresh(feb)
    assert (feb.status, feb.total_cents, feb.line_item_count) == ("open", feb_total, 1)
    assert verify.verify(db) == []


def test_late_usage_with_no_open_draft_is_refused_and_changes_nothing(
    db: Session, acme: tables.Organization
) -> None:
    ingest.record_usage(
        db, [ev(at=datetime(2026, 2, 20, tzinfo=UTC))], now=datetime(2026, 2, 21, tzinfo=UTC)
    )
    ingest.record_usage(db, [ev()], now=NOW)
    for row in db.exec(sa.select(tables.Invoice)).all():  # type: ignore[call-overload]
        lifecycle.finalize(db, row[0], now=NOW, rollup_shards=4)
    before = snapshot(db)
    result = ingest.record_usage(db, [ev("late", at=datetime(2026, 2, 25, tzinfo=UTC))], now=NOW)
    assert [r.code for r in result.rejected] == ["PERIOD_CLOSED"]
    assert snapshot(db) == before


BAD_EVENTS: list[tuple[str, Callable[[], UsageEventInput], str, tuple[str, ...]]] = [
    ("unknown org", lambda: ev(org="nobody"), "UNKNOWN_ORGANIZATION", ("organizationSlug",)),
    ("unknown product", lambda: ev(product="warp-drive"), "UNKNOWN_PRODUCT", ("product",)),
    (
        "before the first price",
        lambda: ev(product="gpu"),
        "UNKNOWN_PRODUCT",
        ("product",),
    ),
    ("negative", lambda: ev(quantity="-1"), "NEGATIVE_QUANTITY", ("quantity",)),
    ("not a number", lambda: ev(quantity="12abc"), "INVALID_VALUE", ("quantity",)),
    ("a float", lambda: ev(quantity=1.5), "INVALID_VALUE", ("quantity",)),
    ("NaN", lambda: ev(quantity="NaN"), "INVALID_VALUE", ("quantity",)),
    ("10 decimals", lambda: ev(quantity="1.0000000001"), "TOO_MANY_DECIMALS", ("quantity",)),
    ("too old", lambda: ev(at=NOW - timedelta(days=36)), "OUT_OF_WINDOW", ("occurredAt",)),
    ("ahead", lambda: ev(at=NOW + timedelta(minutes=6)), "OUT_OF_WINDOW", ("occurredAt",)),
    ("no time zone", lambda: ev(at="2026-03-10T11:00:00"), "INVALID_VALUE", ("occurredAt",)),
    ("not a time", lambda: ev(at="yesterday"), "INVALID_VALUE", ("occurredAt",)),
    ("no id", lambda: UsageEventInput(None, "acme", "egress", "1", NOW), "INVALID_VALUE", ("id",)),
    ("long id", lambda: ev("x" * 201), "INVALID_VALUE", ("id",)),
    ("metadata list", lambda: ev(metadata=[1]), "INVALID_VALUE", ("metadata",)),
    (
        "unknown field",
        lambda: UsageEventInput.from_json({"id": "u", "organizationSlug": "acme", "qty": 1}),
        "INVALID_VALUE",
        (),
    ),
]


@pytest.mark.parametrize(
    ("name", "make", "code", "field"), BAD_EVENTS, ids=[b[0] for b in BAD_EVENTS]
)
def test_each_bad_value_gives_its_code_and_changes_nothing(
    db: Session,
    acme: tables.Organization,
    name: str,
    make: Callable[[], UsageEventInput],
    code: str,
    field: tuple[str, ...],
) -> None:
    ingest.record_usage(db, [ev("earlier")], now=NOW)
    before = snapshot(db)
    bad = make()
    result = ingest.record_usage(db, [bad], now=NOW)
    assert result.accepted == 0
    assert [(r.index, r.code, r.field) for r in result.rejected] == [(0, code, field)]
    assert snapshot(db) == before
    # ... and next to good events, it is the only one left out.
    mixed = ingest.record_usage(db, [ev("g1"), make(), ev("g2")], now=NOW)
    assert (mixed.accepted, [r.index for r in mixed.rejected]) == (2, [1])


def test_usage_lines_cannot_be_added_by_hand_to_a_usage_draft(
    db: Session, acme: tables.Organization
) -> None:
    ingest.record_usage(db, [ev()], now=NOW)
    [line] = usage_rows(db, acme.id)
    draft = db.get_one(tables.Invoice, line.invoice_id)
    with pytest.raises(UsageLinesMetered):
        lifecycle.add_lines(db, draft, [usage_line()], now=NOW)
    lifecycle.add_lines(
        db, draft, [usage_line(kind=LineItemKind.ONE_OFF, quantity="1", unit_price="500")], now=NOW
    )
    ingest.record_usage(db, [ev()], now=NOW)
    assert verify.verify(db) == []
    draft = db.get_one(tables.Invoice, line.invoice_id, populate_existing=True)
    assert draft.subtotal_cents == 500 + half_even(Decimal(20), CPU_PRICE)


def test_replay_rebuilds_the_lines_from_events(db: Session, acme: tables.Organization) -> None:
    ingest.record_usage(db, [ev(quantity="1000"), ev(region="fra", quantity="5")], now=NOW)
    db.execute(sa.text("UPDATE invoice_items SET quantity = 1, amount_cents = 99"))
    diffs = verify.verify(db)
    assert {d.what for d in diffs} == {"line", "totals"}
    verify.replay(db, organization_slug="acme", period_start=date(2026, 3, 1), now=NOW)
    assert verify.verify(db) == []
    assert sorted(r.quantity for r in usage_rows(db, acme.id)) == [Decimal(5), Decimal(1000)]


# Random events: a handful of organizations, products, apps and regions, quantities with up to
# 9 decimals, times across the window (so across two months and both price versions).
event_strategy = st.tuples(
    st.sampled_from(["acme", "beta"]),
    st.sampled_from(["machines-shared-cpu", "egress", "half-cent"]),
    st.sampled_from(["web", "api", None]),
    st.sampled_from(["ams", "sin", None]),
    st.decimals(min_value=0, max_value=10**6, places=9, allow_nan=False, allow_infinity=False),
    st.integers(min_value=0, max_value=34 * 24 * 3600),
)


def _expected_lines(
    events: list[tuple[Any, ...]], now: datetime
) -> dict[tuple[Any, ...], tuple[Decimal, int]]:
    """What every line must be, computed from the inputs alone (no database)."""
    sums: dict[tuple[Any, ...], Decimal] = defaultdict(Decimal)
    for org, product, app, region, q, back in events:
        at = now - timedelta(seconds=back)
        sums[(org, product, app, region, date(at.year, at.month, 1))] += q
    return {k: (q, half_even(q, PRICE_LIST[k[1]][1])) for k, q in sums.items()}


def _stored_lines(db: Session) -> dict[tuple[Any, ...], tuple[Decimal, int]]:
    rows = db.execute(
        sa.text(
            "SELECT o.slug, l.product, l.app, l.region, l.period_start, l.quantity, l.amount_cents "
            "FROM invoice_items l JOIN invoices i ON i.id = l.invoice_id "
            "JOIN organizations o ON o.id = i.organization_id WHERE l.price_id IS NOT NULL"
        )
    ).all()
    return {
        (r.slug, r.product, r.app, r.region, r.period_start): (r.quantity, r.amount_cents)
        for r in rows
    }


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(events=st.lists(event_strategy, min_size=1, max_size=60), chunk=st.integers(1, 25))
def test_every_line_is_the_rounded_product_of_its_summed_quantity(
    db: Session, events: list[tuple[Any, ...]], chunk: int
) -> None:
    with db.begin_nested() as sp:
        make_org(db, slug="acme")
        make_org(db, slug="beta")
        seed_prices(db, at=NOW - timedelta(days=60))
        inputs = [
            ev(
                org=o,
                product=p,
                app=a,
                region=r,
                quantity=format(q, "f"),
                at=NOW - timedelta(seconds=b),
            )
            for o, p, a, r, q, b in events
        ]
        for i in range(0, len(inputs), chunk):
            result = ingest.record_usage(db, inputs[i : i + chunk], now=NOW)
            assert result.rejected == []
        assert _stored_lines(db) == _expected_lines(events, NOW)
        assert verify.verify(db) == []
        sp.rollback()


def _world(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        make_org(s, slug="acme")
        make_org(s, slug="beta")
        seed_prices(s, at=NOW - timedelta(days=60))


def _ingest_in_threads(
    factory: sessionmaker[Session], batches: list[list[UsageEventInput]], threads: int
) -> list[ingest.IngestResult]:
    results: list[ingest.IngestResult] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(threads)
    lock = threading.Lock()

    def work(mine: list[list[UsageEventInput]]) -> None:
        try:
            barrier.wait()
            for batch in mine:
                with factory() as s, s.begin():
                    r = ingest.record_usage(s, batch, now=NOW)
                with lock:
                    results.append(r)
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(batches[i::threads],)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    assert errors == []
    return results


def test_two_concurrent_requests_with_the_same_events_count_them_once(
    committed: sessionmaker[Session],
) -> None:
    _world(committed)
    same = [ev(f"e{i}", quantity="3", region=("ams", "fra")[i % 2]) for i in range(200)]
    results = _ingest_in_threads(committed, [same, list(reversed(same))], threads=2)
    assert sum(r.accepted for r in results) == 200
    assert sum(r.duplicates for r in results) == 200
    with committed() as s:
        assert sorted(r.quantity for r in usage_rows(s)) == [Decimal(300), Decimal(300)]
        assert verify.verify(s) == []


@settings(
    max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    events=st.lists(event_strategy, min_size=20, max_size=150),
    seed=st.integers(0, 2**32),
)
def test_concurrent_ingestion_from_several_threads_verifies_clean(
    committed: sessionmaker[Session], events: list[tuple[Any, ...]], seed: int
) -> None:
    truncate_all(committed.kw["bind"])
    _world(committed)
    inputs = [
        ev(
            f"h{i}",
            org=o,
            product=p,
            app=a,
            region=r,
            quantity=format(q, "f"),
            at=NOW - timedelta(seconds=b),
        )
        for i, (o, p, a, r, q, b) in enumerate(events)
    ]
    rng = random.Random(seed)
    # Every event is sent twice, in shuffled batches over four threads: the second copy of each
    # is a duplicate wherever it lands, and batches for both organizations and months interleave.
    copies = inputs + inputs
    rng.shuffle(copies)
    size = rng.randint(5, 40)
    batches = [copies[i : i + size] for i in range(0, len(copies), size)]
    results = _ingest_in_threads(committed, batches, threads=4)
    assert sum(r.accepted for r in results) == len(inputs)
    assert sum(r.duplicates for r in results) == len(inputs)
    assert all(r.rejected == [] for r in results)
    with committed() as s:
        assert _stored_lines(s) == _expected_lines(events, NOW)
        assert verify.verify(s) == []
