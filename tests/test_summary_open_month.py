"""monthlySummary's open month: the current month's drafts are in it, marked complete: false,
beside the finalized months (complete: true), for an organization and for the platform."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token

Q = """query($years: [Int!]!, $org: String) {
  monthlySummary(years: $years, organizationSlug: $org) {
    month currency invoiceCount complete total { cents } } }"""

TODAY = datetime.now(UTC).date()
THIS_MONTH = TODAY.replace(day=1)
NEXT_MONTH = (THIS_MONTH + timedelta(days=32)).replace(day=1)
LAST_MONTH = (THIS_MONTH - timedelta(days=1)).replace(day=1)
# make_invoice's lines: quantities 1, 2, 3 at 250 cents = 1500 cents an invoice.
ONE = 1500


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, str]:
    with committed() as s, s.begin():
        a, b = make_org(s, slug="open-a"), make_org(s, slug="open-b")
        make_invoice(s, a, status="open", period_start=LAST_MONTH, period_end=THIS_MONTH)
        make_invoice(s, a, status="draft", period_start=THIS_MONTH, period_end=NEXT_MONTH)
        make_invoice(s, b, status="draft", period_start=THIS_MONTH, period_end=NEXT_MONTH)
        return {"a": make_token(s, a), "admin": make_token(s, None, admin=True)}


def months(rows: list[dict[str, Any]]) -> dict[str, tuple[int, int, bool]]:
    return {r["month"]: (r["invoiceCount"], int(r["total"]["cents"]), r["complete"]) for r in rows}


def test_the_open_month_shows_its_drafts_so_far(api: Api, world: dict[str, str]) -> None:
    years = sorted({LAST_MONTH.year, THIS_MONTH.year})
    this, last = f"{THIS_MONTH:%Y-%m}", f"{LAST_MONTH:%Y-%m}"
    member = months(api.data(Q, world["a"], years=years)["monthlySummary"])
    # The draft counts toward the month's total, not toward its finalized invoices.
    assert member[this] == (0, ONE, False)
    assert member[last] == (1, ONE, True)
    platform = months(api.data(Q, world["admin"], years=years)["monthlySummary"])
    assert platform[this] == (0, 2 * ONE, False)
    assert platform[last] == (1, ONE, True)
    # Months after this one have not happened yet: not complete either, and zero.
    if THIS_MONTH.month < 12:
        assert platform[f"{NEXT_MONTH:%Y-%m}"] == (0, 0, False)
    assert all(c for m, (_, _, c) in platform.items() if date.fromisoformat(m + "-01") < THIS_MONTH)
