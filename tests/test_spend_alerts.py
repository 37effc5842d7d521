"""Spend alerts (models/alerts.py, evaluated by models/usage/ingest.py's ingest) and the cycle's GraphQL
(gql/cycle/: setSpendAlert, Organization.spendAlerts, billingRun admin only), plus the month so
far across a close (models/usage/upcoming.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import alerts, tables
from models.close import driver
from models.errors import PeriodClosed
from models.usage import ingest, upcoming
from tests.api_helpers import Api
from tests.factories import SHARDS, make_org, make_token
from tests.test_close import CLOSE_AT, FEB, IN_FEB, MAR, ev, invoices_of, seed_prices

# machines-shared-cpu at 0.000027006173 cents/s: 1,000,000 s = 27.006173 -> 27 cents.
MILLION = "1000000"


def outbox(s: Session) -> list[Any]:
    return list(s.execute(sa.text("SELECT * FROM notification_outbox ORDER BY id")).all())


def record(s: Session, event_id: str, *, at: datetime = IN_FEB, quantity: str = MILLION) -> None:
    result = ingest.record_usage(s, [ev(event_id, "acme", at=at, quantity=quantity)], now=at)
    assert result.rejected == []


@pytest.fixture
def acme(db: Session) -> tables.Organization:
    org = make_org(db, slug="acme")
    seed_prices(db)
    return org


def test_an_alert_fires_when_the_total_reaches_the_threshold_exactly(
    db: Session, acme: tables.Organization
) -> None:
    alerts.set_spend_alert(db, acme, threshold_cents=54, currency="usd", now=IN_FEB)
    record(db, "a")  # 27 cents: below
    assert outbox(db) == []
    record(db, "b")  # 2,000,000 s = 54.012346 -> 54 cents: exactly the threshold
    (note,) = outbox(db)
    assert note.kind == "spend_alert" and note.organization_id == acme.id
    assert note.payload["threshold_cents"] == 54 and note.payload["total_cents"] == 54
    assert note.payload["period"] == "2026-02"
    assert acme.id is not None
    (state,) = alerts.list_alerts(db, acme.id)
    assert state.period == FEB and state.triggered_at == IN_FEB


def test_an_alert_fires_once_per_period_and_again_in_a_new_one(
    db: Session, acme: tables.Organization
) -> None:
    alerts.set_spend_alert(db, acme, threshold_cents=20, currency="USD", now=IN_FEB)
    record(db, "a")  # 27 cents: crosses
    record(db, "b", at=IN_FEB + timedelta(hours=1))  # 54: still above, already fired
    record(db, "c", at=IN_FEB + timedelta(hours=2))
    assert len(outbox(db)) == 1
    march = datetime(2026, 3, 3, tzinfo=UTC)
    record(db, "m1", at=march)  # a new draft, a new period: fires again
    notes = outbox(db)
    assert [n.payload["period"] for n in notes] == ["2026-02", "2026-03"]
    assert acme.id is not None
    (state,) = alerts.list_alerts(db, acme.id)
    assert state.period == date(2026, 3, 1)


def test_alerts_are_per_currency_and_validated(db: Session, acme: tables.Organization) -> None:
    from models.errors import InvalidValue, UnknownCurrency

    alerts.set_spend_alert(db, acme, threshold_cents=1, currency="EUR", now=IN_FEB)
    record(db, "a")  # a USD draft: the EUR threshold does not fire
    assert outbox(db) == []
    with pytest.raises(InvalidValue):
        alerts.set_spend_alert(db, acme, threshold_cents=0, currency="USD", now=IN_FEB)
    with pytest.raises(UnknownCurrency):
        alerts.set_spend_alert(db, acme, threshold_cents=5, currency="XX", now=IN_FEB)
    again = alerts.set_spend_alert(db, acme, threshold_cents=1, currency="eur", now=IN_FEB)
    assert acme.id is not None and len(alerts.list_alerts(db, acme.id)) == 1 and again.id


def test_the_month_so_far_moves_to_the_new_period_with_its_first_event(
    db: Session, acme: tables.Organization
) -> None:
    factory = sessionmaker(bind=db.connection(), class_=Session, expire_on_commit=False,
                           join_transaction_mode="create_savepoint")  # fmt: skip
    assert acme.id is not None
    record(db, "feb")
    db.commit()
    grace = datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    # During the grace, with no March usage yet: March is an empty $0 (no draft, no plan), and
    # February's draft can still be previewed by its period until the close finalizes it.
    during = upcoming.upcoming(db, acme.id, as_of=grace)
    assert during.invoice is None and (during.period_start, during.total_cents) == (MAR, 0)
    feb = upcoming.upcoming(db, acme.id, as_of=grace, period=FEB)
    assert feb.invoice is not None and feb.invoice.period_start == FEB and feb.total_cents > 0
    driver.run(factory, FEB, clock=lambda: CLOSE_AT, rollup_shards=SHARDS)
    with pytest.raises(PeriodClosed):
        upcoming.upcoming(db, acme.id, as_of=CLOSE_AT, period=FEB)
    record(db, "mar", at=CLOSE_AT)
    after = upcoming.upcoming(db, acme.id, as_of=CLOSE_AT + timedelta(minutes=1))
    assert after.invoice is not None and after.invoice.period_start == MAR
    assert after.total_cents == 27
    newest_open = [i for i in invoices_of(db, acme.id) if i.status == "open"][-1]
    assert newest_open.period_start == FEB and newest_open.number == "ACME-0001"


# --- over HTTP --------------------------------------------------------------------------------


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, Any]:
    with committed() as s, s.begin():
        acme = make_org(s, slug="acme")
        beta = make_org(s, slug="beta")
        seed_prices(s)
        s.add(
            tables.BillingRun(period_start=FEB, started_at=CLOSE_AT, drafts=3, finalized=2,
                              failed=1, last_error="inv_x: UNKNOWN_PRODUCT: no price")
        )  # fmt: skip
        return {
            "admin": make_token(s, None, admin=True),
            "member": make_token(s, acme),
            "beta": make_token(s, beta),
            "acme_id": acme.id,
        }


SET = """mutation($slug: String!, $cents: BigInt!) {
  setSpendAlert(input: {organizationSlug: $slug, threshold: {cents: $cents, currency: "usd"}}) {
    spendAlert { threshold { cents currency formatted } triggeredAt period }
    userErrors { field code message } } }"""


def test_set_spend_alert_by_members_and_admins_only_for_their_organization(
    api: Api, world: dict[str, Any]
) -> None:
    own = api.data(SET, world["member"], slug="acme", cents="50000")["setSpendAlert"]
    assert own["userErrors"] == []
    assert own["spendAlert"] == {
        "threshold": {"cents": "50000", "currency": "USD", "formatted": "$500.00"},
        "triggeredAt": None,
        "period": None,
    }
    other = api.data(SET, world["beta"], slug="acme", cents="100")["setSpendAlert"]
    assert other["spendAlert"] is None and other["userErrors"][0]["code"] == "NOT_FOUND"
    bad = api.data(SET, world["admin"], slug="acme", cents="0")["setSpendAlert"]
    assert bad["userErrors"][0]["code"] == "INVALID_VALUE"
    assert api.data(SET, world["admin"], slug="acme", cents="100")["setSpendAlert"]["spendAlert"]
    listed = api.data(
        '{ organization(slug: "acme") { spendAlerts { threshold { cents } triggeredAt period } } }',
        world["member"],
    )["organization"]["spendAlerts"]
    assert [a["threshold"]["cents"] for a in listed] == ["100", "50000"]


RUN = """query($p: String!) { billingRun(period: $p) {
  period startedAt finishedAt drafts finalized skipped failed pending lastError } }"""


def test_billing_run_is_visible_to_admins_only(api: Api, world: dict[str, Any]) -> None:
    run = api.data(RUN, world["admin"], p="2026-02")["billingRun"]
    assert run["period"] == "2026-02" and (run["finalized"], run["failed"], run["pending"]) == (
        2, 1, 0,
    )  # fmt: skip
    assert run["lastError"].startswith("inv_x") and run["finishedAt"] is None
    assert api.data(RUN, world["admin"], p="2026-01")["billingRun"] is None
    denied = api.gql(RUN, world["member"], p="2026-02")
    assert denied["data"] is None or denied["data"]["billingRun"] is None
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    bad = api.gql(RUN, world["admin"], p="November")
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
