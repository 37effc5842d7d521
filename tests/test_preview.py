"""Preview equals final (issue 22): `upcoming.upcoming` (Organization.upcomingInvoice) answers the
invoice that `billing close-period` would produce if the period ended now: the draft's stored
lines, then the recurring subscription lines the close adds, priced at the period start, and the
totals of the one totals rule; never null. Checked against the close itself, line by line and
cent by cent (a property over random usage, subscriptions and price changes). Real PostgreSQL."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import prices, tables
from models.close import chunk, cycle, driver
from models.close.cycle import Outcome
from models.errors import PeriodClosed
from models.invoices import lifecycle
from models.tables import LineItemKind
from models.usage import ingest, upcoming
from models.usage.ingest import UsageEventInput
from tests.api_helpers import Api, QueryCounter
from tests.factories import SHARDS, make_org, make_token
from tests.test_close import invoices_of, lines_of

NOV = date(2026, 11, 1)
DEC = date(2026, 12, 1)
IN_NOV = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CLOSE_NOV = datetime(2026, 12, 1, 3, 0, tzinfo=UTC)
PRICES_FROM = datetime(2026, 1, 1, tzinfo=UTC)


def _price(
    s: Session, product: str, unit: str, cents: str, *, at: datetime = PRICES_FROM,
    org: int | None = None,
) -> None:  # fmt: skip
    prices.set_price(
        s, product=product, unit=unit, currency="USD", unit_price=cents, effective_from=at,
        organization_id=org, now=min(at, PRICES_FROM),
    )  # fmt: skip


def _subscribe(
    s: Session, org_id: int, product: str = "support-plan", *, quantity: str = "1",
    since: date = date(2025, 1, 1), until: date | None = None, description: str = "Support plan",
) -> None:  # fmt: skip
    s.add(tables.Subscription(organization_id=org_id, product=product, description=description,
                              quantity=Decimal(quantity), since=since, until=until))  # fmt: skip
    s.flush()


def _event(
    i: str, org: str, product: str, quantity: str, at: datetime, **kw: Any
) -> UsageEventInput:
    return UsageEventInput(id=i, organization_slug=org, product=product, quantity=quantity,
                           occurred_at=at, **kw)  # fmt: skip


def _stored(s: Session, invoice_id: int) -> list[tuple[Any, ...]]:
    return [
        (r.kind, r.description, r.product, r.app, r.region, r.unit, r.quantity, r.unit_price,
         r.amount_cents, r.period_start, r.period_end)
        for r in lines_of(s, invoice_id)
    ]  # fmt: skip


def _previewed(up: upcoming.Upcoming) -> list[tuple[Any, ...]]:
    return [
        (str(x.kind), x.description, x.product, x.app, x.region, x.unit, x.quantity,
         x.unit_price, x.amount_cents, x.period_start, x.period_end)
        for x in up.lines
    ]  # fmt: skip


@pytest.fixture
def factory(db: Session) -> sessionmaker[Session]:
    return sessionmaker(bind=db.connection(), class_=Session, expire_on_commit=False,
                        join_transaction_mode="create_savepoint")  # fmt: skip


@pytest.fixture
def acme(db: Session) -> tables.Organization:
    org = make_org(db, slug="acme")
    _price(db, "egress", "GB", "5")
    _price(db, "support-plan", "month", "2900")
    assert org.id is not None
    _subscribe(db, org.id)
    return org


def test_acme_november_preview_includes_the_support_plan_the_close_adds(
    db: Session, acme: tables.Organization, factory: sessionmaker[Session]
) -> None:
    """Issue 22: acme's November draft read $231.05 and its invoice came out $260.05: the $29
    support plan the close adds was missing from the month so far."""
    assert acme.id is not None
    ingest.record_usage(db, [_event("n1", "acme", "egress", "4621", IN_NOV, region="fra")],
                        now=IN_NOV)  # fmt: skip
    draft = invoices_of(db, acme.id)[0]
    assert draft.total_cents == 231_05  # the stored draft: usage only

    preview = upcoming.upcoming(db, acme.id, as_of=IN_NOV)

    assert preview is not None
    assert preview.total_cents == 260_05
    assert [(g.name, g.total_cents) for g in preview.by_product] == [
        ("egress", 231_05), ("support-plan", 29_00),
    ]  # fmt: skip
    db.commit()
    done = driver.run(factory, NOV, clock=lambda: CLOSE_NOV, rollup_shards=SHARDS)
    assert done.counts[Outcome.FINALIZED] == 1
    (invoice,) = invoices_of(db, acme.id)
    assert invoice.status == "open" and invoice.total_cents == 260_05
    assert _previewed(preview) == _stored(db, invoice.id)  # type: ignore[arg-type]


def test_an_organization_with_only_a_subscription_previews_its_plan(
    db: Session, acme: tables.Organization, factory: sessionmaker[Session]
) -> None:
    """No usage yet: not null, $0 of usage and the plan, as the close will bill it."""
    assert acme.id is not None
    preview = upcoming.upcoming(db, acme.id, as_of=IN_NOV)
    assert preview is not None and preview.invoice is None
    assert preview.total_cents == 29_00 and preview.period_start == NOV
    assert [(x.kind, x.amount_cents) for x in preview.lines] == [(LineItemKind.SUBSCRIPTION, 2900)]
    db.commit()
    driver.run(factory, NOV, clock=lambda: CLOSE_NOV, rollup_shards=SHARDS)
    (invoice,) = invoices_of(db, acme.id)
    assert _previewed(preview) == _stored(db, invoice.id)  # type: ignore[arg-type]


def test_an_organization_with_neither_usage_nor_subscription_previews_an_empty_zero(
    db: Session,
) -> None:
    org = make_org(db, slug="idle")
    assert org.id is not None
    preview = upcoming.upcoming(db, org.id, as_of=IN_NOV)
    assert preview is not None and preview.invoice is None
    assert (preview.total_cents, preview.lines, preview.by_product) == (0, [], [])
    assert preview.currency == "USD" and (preview.period_start, preview.period_end) == (NOV, DEC)


def test_a_finalized_period_has_no_preview(
    db: Session, acme: tables.Organization, factory: sessionmaker[Session]
) -> None:
    assert acme.id is not None
    ingest.record_usage(db, [_event("n1", "acme", "egress", "10", IN_NOV)], now=IN_NOV)
    db.commit()
    driver.run(factory, NOV, clock=lambda: CLOSE_NOV, rollup_shards=SHARDS)
    with pytest.raises(PeriodClosed):
        upcoming.upcoming(db, acme.id, as_of=CLOSE_NOV, period=NOV)
    # The default is the month of `as_of`: December, not yet used, is the plan alone.
    assert upcoming.upcoming(db, acme.id, as_of=CLOSE_NOV).total_cents == 29_00


def test_the_preview_costs_a_fixed_number_of_statements_and_takes_no_locks(
    db: Session, acme: tables.Organization
) -> None:
    assert acme.id is not None
    events = [
        _event(f"q{i}", "acme", "egress", str(i + 1), IN_NOV, region=f"r{i:02d}") for i in range(60)
    ]
    ingest.record_usage(db, events, now=IN_NOV)
    bind = db.get_bind()
    engine = bind.engine if isinstance(bind, sa.Connection) else bind
    with QueryCounter(engine) as counted:
        preview = upcoming.upcoming(db, acme.id, as_of=IN_NOV)
    assert len(preview.lines) == 61
    assert len(counted.statements) <= 5, counted.statements
    assert not any("FOR UPDATE" in q or "FOR NO KEY" in q for q in counted.statements)


UPCOMING = """query($p: String) { organization(slug: "acme") { upcomingInvoice(period: $p) {
  periodStart periodEnd invoice { status } total { cents } projectedTotal { cents }
  lines { kind description product quantity unitPrice amount { cents } }
  byProduct { name total { cents } } } } }"""


def test_upcoming_invoice_over_http_is_the_plan_before_any_usage(
    api: Api, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="acme")
        _price(s, "support-plan", "month", "2900")
        assert org.id is not None
        _subscribe(s, org.id)
        token = make_token(s, org)
    up = api.data(UPCOMING, token, p="2026-11")["organization"]["upcomingInvoice"]
    assert up["invoice"] is None and up["periodStart"] == "2026-11-01"
    assert up["total"]["cents"] == "2900" and up["projectedTotal"]["cents"] == "2900"
    assert [(x["kind"], x["product"], x["amount"]["cents"]) for x in up["lines"]] == [
        ("SUBSCRIPTION", "support-plan", "2900")
    ]
    bad = api.gql(UPCOMING, token, p="November")
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


# --- the property: preview of a past period == what the close finalizes ----------------------

FEB = date(2026, 2, 1)
MAR = date(2026, 3, 1)
CLOSE_FEB = datetime(2026, 3, 1, 3, 0, tzinfo=UTC)
PRODUCTS = {"egress": ("GB", "2"), "cpu": ("second", "0.000027006173"), "ipv4": ("month", "200")}
PLANS = {"support-plan": "2900", "seat": "1250.5"}
_slugs = itertools.count()

usage = st.tuples(
    st.sampled_from(sorted(PRODUCTS)),
    st.decimals(min_value=0, max_value=100_000, places=3, allow_nan=False),
    st.integers(min_value=0, max_value=27),  # day of February
    st.sampled_from(["ams", "fra", None]),
)
plan = st.tuples(
    st.sampled_from(sorted(PLANS)),
    st.integers(min_value=1, max_value=3),
    st.sampled_from([date(2025, 6, 1), FEB, date(2026, 2, 14), MAR]),  # since
    st.sampled_from([None, date(2026, 2, 10), FEB]),  # until
)
org_world = st.tuples(
    st.lists(usage, max_size=6),
    st.lists(plan, max_size=2),
    st.booleans(),  # a one-off line written by hand on the usage draft
    st.booleans(),  # an organization price override of the first plan from the period start
)
price_change = st.tuples(
    st.sampled_from(sorted(PRODUCTS) + sorted(PLANS)),
    st.sampled_from(
        [
            datetime(2026, 2, 1, tzinfo=UTC),
            datetime(2026, 2, 12, tzinfo=UTC),
            datetime(2026, 3, 1, tzinfo=UTC),
        ]
    ),
    st.integers(min_value=1, max_value=99_999),
)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])  # fmt: skip
@given(
    orgs=st.lists(org_world, min_size=1, max_size=3),
    changes=st.lists(price_change, max_size=3),
    alone=st.booleans(),  # the per-invoice fallback instead of the chunk
)
def test_preview_of_a_past_period_equals_what_the_close_finalizes(
    db: Session, orgs: list[Any], changes: list[Any], alone: bool
) -> None:
    example = db.begin_nested()
    try:
        _check_preview_equals_close(db, orgs, changes, alone=alone)
    finally:
        example.rollback()


def _check_preview_equals_close(
    db: Session, orgs: list[Any], changes: list[Any], *, alone: bool
) -> None:
    for product, (unit, cents) in PRODUCTS.items():
        _price(db, product, unit, cents)
    for product, cents in PLANS.items():
        _price(db, product, "month", cents)
    for i, (product, at, cents) in enumerate(changes):
        unit = PRODUCTS[product][0] if product in PRODUCTS else "month"
        _price(db, product, unit, str(Decimal(cents) / 100), at=at + timedelta(seconds=i))
    made = []
    for usages, plans, one_off, override in orgs:
        org = make_org(db, slug=f"p{next(_slugs)}")
        assert org.id is not None
        for product, quantity, since, until in plans:
            until = until if until is None or until > since else None
            _subscribe(db, org.id, product, quantity=str(quantity), since=since, until=until,
                       description=product.title())  # fmt: skip
        if override and plans:
            _price(
                db, plans[0][0], "month", "999", at=datetime(2026, 1, 15, tzinfo=UTC), org=org.id
            )
        events = [
            _event(f"{org.slug}-{i}", org.slug, product, str(q),  # type: ignore[arg-type]
                   datetime(2026, 2, 1, 6, tzinfo=UTC) + timedelta(days=day), region=region)
            for i, (product, q, day, region) in enumerate(usages)
        ]  # fmt: skip
        if events:
            assert (
                ingest.record_usage(db, events, now=datetime(2026, 2, 28, 23, tzinfo=UTC)).rejected
                == []
            )
        if one_off and events:
            draft = invoices_of(db, org.id)[0]
            lifecycle.add_lines(db, draft, [lifecycle.LineInput(
                kind=LineItemKind.ONE_OFF, description="Setup", product="setup", unit="each",
                quantity="1", unit_price="4999")], now=datetime(2026, 2, 28, tzinfo=UTC))  # fmt: skip
        made.append(org.id)
    previews = {o: upcoming.upcoming(db, o, as_of=CLOSE_FEB, period=FEB) for o in made}

    # The close's steps in this transaction (driver.run commits, which would end the example's
    # savepoint): drafts for subscribed organizations, the claim, then a chunk or one by one.
    cycle.open_run(db, FEB, now=CLOSE_FEB)
    cycle.create_missing_drafts(db, FEB, now=CLOSE_FEB, limit=100)
    ids = [c.invoice_id for c in cycle.claim(db, FEB, limit=100, failed_since=CLOSE_FEB)]
    if alone:
        for invoice_id in ids:
            chunk.close_invoice(db, invoice_id, now=CLOSE_FEB, rollup_shards=SHARDS)
    else:
        closed = chunk.close_drafts(db, ids, now=CLOSE_FEB, rollup_shards=SHARDS)
        assert closed.isolated == []

    for org_id in made:
        preview = previews[org_id]
        finalized = [i for i in invoices_of(db, org_id) if i.status == "open"]
        if not finalized:  # the close skipped it (no lines): the preview is an empty $0
            assert (preview.total_cents, preview.lines) == (0, []), preview
            continue
        (invoice,) = finalized
        assert _previewed(preview) == _stored(db, invoice.id)  # type: ignore[arg-type]
        assert preview.total_cents == invoice.total_cents
        assert sum(g.total_cents for g in preview.by_region) == invoice.total_cents
