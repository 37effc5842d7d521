"""The month-end projection (models/usage/forecast.py): the single-event bound, through the
draft the API reads and as a property of the pure function, and the API answering exactly what
the pure function computes over the draft's lines."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from fractions import Fraction

import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from models import tables
from models.usage import ingest, upcoming
from models.usage.forecast import Forecast, Kind, LineUsage, forecast
from tests.api_helpers import Api
from tests.factories import make_org, make_token
from tests.test_usage import ev, seed_prices

MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)


def bound_cents(amount_cents: int, as_of: datetime) -> Fraction:
    """What one event of `amount_cents` may move the projection by: itself, plus itself times
    the remaining share of the month over the elapsed share (+1 cent of per-line rounding)."""
    k = Fraction(int((APRIL - as_of).total_seconds()), int((as_of - MARCH).total_seconds()))
    return amount_cents + amount_cents * k + 1


def projected(db: Session, org_id: int, as_of: datetime) -> tuple[int, int]:
    up = upcoming.upcoming(db, org_id, as_of=as_of)
    assert up is not None
    return up.total_cents, up.projected_cents


def test_one_egress_event_moves_the_projection_by_at_most_its_bound(db: Session) -> None:
    org = make_org(db, slug="acme")
    seed_prices(db)
    assert org.id is not None
    as_of = datetime(2026, 3, 11, 12, tzinfo=UTC)
    # A machine since the 1st, hourly, and some egress: the month so far.
    steady = [ev(at=MARCH + timedelta(hours=h), quantity="3600") for h in range(int(10.5 * 24))]
    steady.append(ev(product="egress", app="web", region="fra", at=MARCH, quantity="10"))
    ingest.record_usage(db, steady, now=as_of)
    before_total, before = projected(db, org.id, as_of)
    # One 12.5 GB egress event in a region with no usage yet ($0.25 at 2 cents a GB).
    spike = ev(product="egress", app="api", region="sin", at=as_of - timedelta(minutes=5),
               quantity="12.5")  # fmt: skip
    ingest.record_usage(db, [spike], now=as_of)
    after_total, after = projected(db, org.id, as_of)
    amount = after_total - before_total
    assert amount == 25
    assert abs(after - before) <= bound_cents(amount, as_of), (before, after)
    # The new region alone is projected within the same bound, not from its own five minutes.
    up = upcoming.upcoming(db, org.id, as_of=as_of)
    assert up is not None
    (sin,) = [g for g in up.by_region if g.name == "sin"]
    assert sin.projected_cents <= bound_cents(25, as_of), sin


def test_a_machine_started_an_hour_ago_is_projected_within_its_bound(db: Session) -> None:
    org = make_org(db, slug="acme")
    seed_prices(db)
    assert org.id is not None
    as_of = datetime(2026, 3, 20, tzinfo=UTC)
    ingest.record_usage(db, [ev(at=as_of - timedelta(hours=1), quantity="3600000")], now=as_of)
    total, proj = projected(db, org.id, as_of)
    assert total > 0 and proj <= bound_cents(total, as_of)
    assert db.execute(sa.text("SELECT count(*) FROM invoice_items")).scalar_one() == 1


# The property, over the pure function: any draft, any single event.
_AS_OF = st.integers(min_value=60, max_value=31 * 86_400 - 60)
_LINE = st.tuples(
    st.sampled_from([Kind.CONTINUOUS, Kind.BURSTY, Kind.EXACT]),
    st.integers(min_value=0, max_value=10**9),  # cents so far
    st.integers(min_value=0, max_value=31 * 86_400),  # first usage, seconds into the month
    st.integers(min_value=0, max_value=31 * 86_400),  # last usage
)


def _run(lines: list[LineUsage], as_of: datetime) -> Forecast:
    return forecast(lines, as_of=as_of, period_start=MARCH, period_end=APRIL)


@settings(max_examples=400, deadline=None)
@given(
    as_of_s=_AS_OF,
    raw=st.lists(_LINE, max_size=8),
    target=st.integers(min_value=0, max_value=8),
    amount=st.integers(min_value=0, max_value=10**8),
    at_s=st.integers(min_value=0, max_value=31 * 86_400),
    kind=st.sampled_from([Kind.CONTINUOUS, Kind.BURSTY]),
)
def test_no_single_event_moves_the_projection_past_its_bound(
    as_of_s: int,
    raw: list[tuple[Kind, int, int, int]],
    target: int,
    amount: int,
    at_s: int,
    kind: Kind,
) -> None:
    as_of = MARCH + timedelta(seconds=as_of_s)
    at = MARCH + timedelta(seconds=min(at_s, as_of_s))  # an event has happened by as_of
    lines = []
    for k, cents, a, b in raw:
        first, last = sorted((min(a, as_of_s), min(b, as_of_s)))
        lines.append(
            LineUsage(k, cents, MARCH + timedelta(seconds=first), MARCH + timedelta(seconds=last))
        )
    before = _run(lines, as_of)
    if target < len(lines) and lines[target].kind is not Kind.EXACT:
        x = lines[target]
        assert x.first_usage_at is not None and x.last_usage_at is not None
        lines[target] = replace(
            x,
            amount_cents=x.amount_cents + amount,
            first_usage_at=min(x.first_usage_at, at),
            last_usage_at=max(x.last_usage_at, at),
        )
    else:  # the first event of a new line
        lines.append(LineUsage(kind, amount, at, at))
    after = _run(lines, as_of)
    assert abs(after.total_cents - before.total_cents) <= bound_cents(amount, as_of)
    for f in (before, after):
        assert f.low_cents <= f.total_cents <= f.high_cents


UPCOMING = """{ organization(slug: "acme") { upcomingInvoice { asOf
  projectedTotal { cents } projection { total { cents } low { cents } high { cents } method }
  invoice { id } } } }"""


def test_the_api_answers_what_the_pure_function_computes(
    api: Api, committed: sessionmaker[Session]
) -> None:
    now = datetime.now(UTC)
    with committed() as s, s.begin():
        make_org(s, slug="acme")
        seed_prices(s, at=now - timedelta(days=60))
        member = make_token(s, s.exec(select(tables.Organization)).one())
        start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        events = [
            ev(at=max(start, now - timedelta(hours=h)), quantity="360000") for h in range(1, 30)
        ]
        events += [ev(product="egress", app="api", region="sin", at=max(start, now - timedelta(minutes=5)),
                      quantity="12.5")]  # fmt: skip
        events += [ev(product="volume-storage", app="db", at=max(start, now - timedelta(days=2)),
                      quantity="0.5")]  # fmt: skip
        assert ingest.record_usage(s, events, now=now).rejected == []
    up = api.data(UPCOMING, member)["organization"]["upcomingInvoice"]
    as_of = datetime.fromisoformat(up["asOf"])
    with committed() as s:
        rows = s.execute(
            sa.text(
                "SELECT unit, amount_cents, first_usage_at, last_usage_at FROM invoice_items"
                " i JOIN usage_drafts d ON d.invoice_id = i.invoice_id"
            )
        ).all()
        (period_start,) = s.execute(sa.text("SELECT period_start FROM invoices")).one()
    assert len(rows) == 3
    lines = [
        LineUsage(Kind.BURSTY if r.unit == "GB" else Kind.CONTINUOUS, r.amount_cents,
                  r.first_usage_at, r.last_usage_at)
        for r in rows
    ]  # fmt: skip
    start = datetime.combine(period_start, datetime.min.time(), tzinfo=UTC)
    end = (start + timedelta(days=32)).replace(day=1)
    want = forecast(lines, as_of=as_of, period_start=start, period_end=end)
    p = up["projection"]
    assert int(up["projectedTotal"]["cents"]) == int(p["total"]["cents"]) == want.total_cents
    assert (int(p["low"]["cents"]), int(p["high"]["cents"])) == (want.low_cents, want.high_cents)
    assert p["method"] == want.method
