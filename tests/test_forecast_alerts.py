"""Forecast spend alerts (models/alerts.py evaluate_forecasts, on the beat task
sync.evaluate_forecast_alerts): fire once per period when the low end of the projection reaches
the threshold, into the same notification outbox as the actual alerts; setSpendAlert(kind:
FORECAST) and spendAlerts over HTTP."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import alerts, tables
from models.tables import SpendAlertKind
from models.usage import ingest, upcoming
from sync.runtime import Runtime
from tests.api_helpers import Api
from tests.factories import make_org, make_token
from tests.test_usage import ev, seed_prices

MARCH = datetime(2026, 3, 1, tzinfo=UTC)
APRIL = datetime(2026, 4, 1, tzinfo=UTC)
HOUR_OF_CPU = "3600000"  # 1000 vCPU-hours an hour at 0.000027006173 cents/s: 97 cents


def outbox(s: Session) -> list[Any]:
    return list(s.execute(sa.text("SELECT * FROM notification_outbox ORDER BY id")).all())


def run_hours(db: Session, start: datetime, hours: int, *, now: datetime) -> None:
    events = [ev(at=start + timedelta(hours=h), quantity=HOUR_OF_CPU) for h in range(hours)]
    assert ingest.record_usage(db, events, now=now).rejected == []


@pytest.fixture
def acme(db: Session) -> tables.Organization:
    org = make_org(db, slug="acme")
    seed_prices(db)
    return org


def test_a_forecast_alert_fires_once_per_period_when_the_low_end_reaches_it(
    db: Session, acme: tables.Organization
) -> None:
    assert acme.id is not None
    # About $7 of CPU a month at 97 cents a day... 97 cents an hour: ~$700 a month.
    alerts.set_spend_alert(
        db, acme, threshold_cents=50_000, currency="USD", now=MARCH, kind=SpendAlertKind.FORECAST
    )
    day2 = MARCH + timedelta(days=2)
    run_hours(db, MARCH, 48, now=day2)
    up = upcoming.upcoming(db, acme.id, as_of=day2)
    assert up is not None and up.total_cents < 50_000 <= up.low_cents
    # The ingest evaluates actual alerts only: nothing yet.
    assert outbox(db) == []
    assert alerts.evaluate_forecasts(db, now=day2) == 1
    (note,) = outbox(db)
    assert note.kind == "spend_alert" and note.organization_id == acme.id
    p = note.payload
    assert p["kind"] == "forecast" and p["threshold_cents"] == 50_000 and p["period"] == "2026-03"
    assert (p["total_cents"], p["projected_low_cents"]) == (up.total_cents, up.low_cents)
    assert p["projected_cents"] == up.projected_cents
    (state,) = alerts.list_alerts(db, acme.id)
    assert state.alert.kind == "forecast" and state.period == MARCH.date()
    # Later in the month, still above: not again.
    day3 = day2 + timedelta(days=1)
    run_hours(db, day2, 24, now=day3)
    assert alerts.evaluate_forecasts(db, now=day3) == 0
    assert len(outbox(db)) == 1
    # April: a new period, fires again.
    april2 = APRIL + timedelta(days=2)
    run_hours(db, APRIL, 48, now=april2)
    assert alerts.evaluate_forecasts(db, now=april2) == 1
    assert [n.payload["period"] for n in outbox(db)] == ["2026-03", "2026-04"]
    (state,) = alerts.list_alerts(db, acme.id)
    assert state.period == date(2026, 4, 1)


def test_a_forecast_alert_waits_while_the_low_end_is_below(
    db: Session, acme: tables.Organization
) -> None:
    assert acme.id is not None
    alerts.set_spend_alert(
        db, acme, threshold_cents=100_000, currency="USD", now=MARCH, kind=SpendAlertKind.FORECAST
    )
    # An actual alert at the same amount is a second alert, evaluated by the ingest.
    alerts.set_spend_alert(db, acme, threshold_cents=100_000, currency="USD", now=MARCH)
    day2 = MARCH + timedelta(days=2)
    run_hours(db, MARCH, 48, now=day2)  # projected ~$700: below $1,000
    assert alerts.evaluate_forecasts(db, now=day2) == 0
    assert outbox(db) == [] and len(alerts.list_alerts(db, acme.id)) == 2


def test_the_beat_task_evaluates_forecast_alerts(
    committed: sessionmaker[Session], rt: Runtime
) -> None:
    from sync.celery_app import celery_settings
    from sync.forecast_alerts import evaluate_forecast_alerts

    now = datetime.now(UTC)
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with committed() as s, s.begin():
        org = make_org(s, slug="acme")
        seed_prices(s, at=start - timedelta(days=60))
        alerts.set_spend_alert(
            s, org, threshold_cents=1, currency="USD", now=now, kind=SpendAlertKind.FORECAST
        )
        run_hours(s, start, max(1, int((now - start).total_seconds() // 3600)), now=now)
    assert evaluate_forecast_alerts() == 1
    assert evaluate_forecast_alerts() == 0
    with committed() as s:
        assert [n.payload["kind"] for n in outbox(s)] == ["forecast"]
    schedule = celery_settings(rt.config)["beat_schedule"]
    assert schedule["evaluate-forecast-alerts"]["task"] == "sync.evaluate_forecast_alerts"


SET = """mutation($kind: SpendAlertKind) {
  setSpendAlert(input: {organizationSlug: "acme", threshold: {cents: "25000", currency: "usd"},
                        kind: $kind}) {
    spendAlert { kind threshold { cents } } userErrors { field code } } }"""
LIST = """{ organization(slug: "acme") { spendAlerts { kind threshold { cents } period } } }"""


def test_set_spend_alert_with_kind_forecast_over_http(
    api: Api, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        member = make_token(s, make_org(s, slug="acme"))
    forecast = api.data(SET, member, kind="FORECAST")["setSpendAlert"]
    assert forecast == {"spendAlert": {"kind": "FORECAST", "threshold": {"cents": "25000"}},
                        "userErrors": []}  # fmt: skip
    actual = api.data(SET, member)["setSpendAlert"]  # the default kind
    assert actual["spendAlert"]["kind"] == "ACTUAL"
    listed = api.data(LIST, member)["organization"]["spendAlerts"]
    assert [a["kind"] for a in listed] == ["ACTUAL", "FORECAST"]


def test_one_tick_projects_every_organization_with_forecast_alerts(
    db: Session, acme: tables.Organization
) -> None:
    beta, idle = make_org(db, slug="beta"), make_org(db, slug="idle")
    for org, cents in ((acme, 50_000), (beta, 10**9), (idle, 1)):
        alerts.set_spend_alert(db, org, threshold_cents=cents, currency="USD", now=MARCH,
                               kind=SpendAlertKind.FORECAST)  # fmt: skip
    day2 = MARCH + timedelta(days=2)
    run_hours(db, MARCH, 48, now=day2)  # acme: ~$700 projected, crosses $500
    events = [
        ev(org="beta", at=MARCH + timedelta(hours=h), quantity=HOUR_OF_CPU) for h in range(48)
    ]
    assert ingest.record_usage(db, events, now=day2).rejected == []  # beta: below $10M
    # idle: no draft at all.
    assert alerts.evaluate_forecasts(db, now=day2) == 1
    assert [n.organization_id for n in outbox(db)] == [acme.id]
