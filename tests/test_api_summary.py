"""monthlySummary over HTTP: shape, scopes, zeros, bad input."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token

Q = """query($years: [Int!]!, $org: String, $currency: String) {
  monthlySummary(years: $years, organizationSlug: $org, currency: $currency) {
    month year monthOfYear currency invoiceCount subtotal { cents } total { cents formatted } } }"""


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, str]:
    with committed() as s, s.begin():
        a, b = make_org(s, slug="sum-a"), make_org(s, slug="sum-b")
        make_invoice(
            s, a, status="open", period_start=date(2025, 12, 31), period_end=date(2026, 1, 31)
        )
        make_invoice(
            s, a, status="paid", period_start=date(2026, 1, 1), period_end=date(2026, 2, 1)
        )
        make_invoice(
            s, a, status="void", period_start=date(2026, 1, 1), period_end=date(2026, 2, 1)
        )
        make_invoice(
            s, a, status="draft", period_start=date(2026, 1, 1), period_end=date(2026, 2, 1)
        )
        make_invoice(
            s,
            b,
            status="open",
            currency="EUR",
            period_start=date(2026, 3, 1),
            period_end=date(2026, 4, 1),
        )
        return {"a": make_token(s, a), "admin": make_token(s, None, admin=True)}


def test_an_organization_you_cannot_see_has_no_months(api: Api, world: dict[str, str]) -> None:
    # Another organization reads exactly like a missing one, for members and admins alike: an
    # empty list, as `invoices(filter: {organizationSlug})` answers, never an error that would
    # tell a member the slug exists.
    assert api.data(Q, world["a"], years=[2026], org="sum-b") == {"monthlySummary": []}
    assert api.data(Q, world["a"], years=[2026], org="ghost") == {"monthlySummary": []}
    assert api.data(Q, world["admin"], years=[2026], org="ghost") == {"monthlySummary": []}
    # The member's own organization by slug is the same as no slug at all.
    own = api.data(Q, world["a"], years=[2026], org="sum-a")["monthlySummary"]
    assert own == api.data(Q, world["a"], years=[2026])["monthlySummary"] and len(own) == 12


def by_key(rows: list[dict[str, Any]]) -> dict[tuple[str, str], tuple[int, str]]:
    return {(r["month"], r["currency"]): (r["invoiceCount"], r["total"]["cents"]) for r in rows}


def test_member_sees_own_months_with_zeros(api: Api, world: dict[str, str]) -> None:
    rows = api.data(Q, world["a"], years=[2025, 2026])["monthlySummary"]
    assert len(rows) == 24 and [r["month"] for r in rows[:2]] == ["2025-01", "2025-02"]
    got = by_key(rows)
    assert got[("2025-12", "USD")] == (1, "1500")  # Dec 31 belongs to December
    assert got[("2026-01", "USD")] == (1, "1500")  # paid counts, void and draft do not
    assert got[("2026-03", "USD")] == (0, "0")
    assert rows[0]["year"] == 2025 and rows[0]["monthOfYear"] == 1


def test_admin_platform_and_per_org(api: Api, world: dict[str, str]) -> None:
    platform = by_key(api.data(Q, world["admin"], years=[2026])["monthlySummary"])
    assert platform[("2026-01", "USD")] == (1, "1500") and platform[("2026-03", "EUR")] == (
        1,
        "1500",
    )
    assert platform[("2026-03", "USD")] == (0, "0")  # every currency gets every month
    only_eur = api.data(Q, world["admin"], years=[2026], currency="eur")["monthlySummary"]
    assert {r["currency"] for r in only_eur} == {"EUR"} and len(only_eur) == 12
    b = by_key(api.data(Q, world["admin"], years=[2026], org="sum-b")["monthlySummary"])
    assert set(b) == {(f"2026-{m:02d}", "EUR") for m in range(1, 13)}


@pytest.mark.parametrize(
    ("variables", "needle"),
    [
        ({"years": []}, "at least one year"),
        ({"years": list(range(2000, 2011))}, "at most 10 years"),
        ({"years": [1999]}, "outside 2000-2100"),
        ({"years": [2101]}, "outside 2000-2100"),
        ({"years": [2026], "currency": "zzz"}, "not a supported ISO 4217"),
    ],
)
def test_bad_input_is_a_clear_error(
    api: Api, world: dict[str, str], variables: dict[str, Any], needle: str
) -> None:
    body = api.gql(Q, world["a"], **variables)
    assert body["data"] is None
    assert (
        needle in body["errors"][0]["message"]
        and body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    )
