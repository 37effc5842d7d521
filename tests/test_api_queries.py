"""Read side of the API over HTTP: auth and scoping, keyset pagination, filters, money, limits,
and the number of SQL statements a page costs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from gql.export_schema import sdl
from models.invoices import lifecycle
from settings import PROJECT_ROOT
from tests.api_helpers import Api, QueryCounter
from tests.factories import NOW, SHARDS, make_invoice, make_org, make_token, usage_line

PAGE = """query($first: Int!, $after: String, $filter: InvoiceFilter) {
  invoices(first: $first, after: $after, filter: $filter) {
    totalCount pageInfo { hasNextPage endCursor } edges { cursor node { id number status currency } } } }"""


@pytest.fixture
def two_orgs(committed: sessionmaker[Session]) -> dict[str, str]:
    with committed() as s, s.begin():
        a, b = make_org(s, slug="alpha"), make_org(s, slug="beta", currency="EUR")
        inv_a = make_invoice(s, a, status="open")
        inv_b = make_invoice(s, b, status="open")
        return {
            "a": make_token(s, a),
            "b": make_token(s, b),
            "admin": make_token(s, None, admin=True),
            "inv_a": inv_a.public_id,
            "num_a": inv_a.number or "",
            "inv_b": inv_b.public_id,
        }


def test_no_token_is_unauthenticated_with_no_data(api: Api, two_orgs: dict[str, str]) -> None:
    for token in (None, "bt_not_a_real_token"):
        body = api.gql("{ invoices { nodes { id } } }", token)
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]


def test_introspection_needs_no_token_so_graphiql_can_load(api: Api) -> None:
    body = api.gql("{ __schema { queryType { name } } }", None)
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"


def test_members_see_their_organization_only(api: Api, two_orgs: dict[str, str]) -> None:
    q = "query($id: ID!) { invoice(id: $id) { id organization { slug } } }"
    assert (
        api.data(q, two_orgs["a"], id=two_orgs["inv_a"])["invoice"]["organization"]["slug"]
        == "alpha"
    )
    assert api.data(q, two_orgs["a"], id=two_orgs["num_a"])["invoice"]["id"] == two_orgs["inv_a"]
    # Another organization's invoice reads exactly like a missing one: null, no error.
    assert api.data(q, two_orgs["a"], id=two_orgs["inv_b"]) == {"invoice": None}
    assert api.data(q, two_orgs["a"], id="inv_doesnotexist") == {"invoice": None}
    assert api.data('{ organization(slug: "beta") { slug } }', two_orgs["a"]) == {
        "organization": None
    }
    listed = api.data(PAGE, two_orgs["a"], first=50)["invoices"]
    assert {e["node"]["id"] for e in listed["edges"]} == {two_orgs["inv_a"]}
    filtered = api.data(PAGE, two_orgs["a"], first=50, filter={"organizationSlug": "beta"})
    assert filtered["invoices"]["edges"] == [] and filtered["invoices"]["totalCount"] == 0
    # Admins see everything.
    assert (
        api.data(q, two_orgs["admin"], id=two_orgs["inv_b"])["invoice"]["organization"]["slug"]
        == "beta"
    )
    assert api.data(PAGE, two_orgs["admin"], first=50)["invoices"]["totalCount"] == 2
    viewer = api.data("{ viewer { isAdmin scope organizations { slug } } }", two_orgs["a"])[
        "viewer"
    ]
    assert viewer == {"isAdmin": False, "scope": "MEMBER", "organizations": [{"slug": "alpha"}]}


@pytest.mark.parametrize("slug", ["beta", "ghost"])  # another organization, a missing one
def test_an_organization_you_cannot_see_reads_as_missing_everywhere(
    api: Api, two_orgs: dict[str, str], slug: str
) -> None:
    """One answer wherever a member names an organization it cannot see: null for a single
    object, an empty list for a list. The same as for a slug that does not exist, so nothing
    tells the member that the organization is there."""
    member = two_orgs["a"]
    body = api.gql(
        """query($slug: String!, $filter: InvoiceFilter!) {
          organization(slug: $slug) { slug }
          invoices(first: 10, filter: $filter) { totalCount nodes { id } }
          monthlySummary(years: [2026], organizationSlug: $slug) { month }
          viewer { organizations { slug invoices(first: 10, filter: $filter) { totalCount nodes { id } } } }
        }""",
        member,
        slug=slug,
        filter={"organizationSlug": slug},
    )
    empty_page = {"totalCount": 0, "nodes": []}
    assert body == {
        "data": {
            "organization": None,
            "invoices": empty_page,
            "monthlySummary": [],
            "viewer": {"organizations": [{"slug": "alpha", "invoices": empty_page}]},
        }
    }


def test_another_organizations_invoice_reads_as_missing(api: Api, two_orgs: dict[str, str]) -> None:
    q = "query($id: ID!) { invoice(id: $id) { id } }"
    assert api.gql(q, two_orgs["a"], id=two_orgs["inv_b"]) == {"data": {"invoice": None}}
    assert api.gql(q, two_orgs["a"], id="inv_missing") == {"data": {"invoice": None}}
    assert api.gql(q, two_orgs["admin"], id=two_orgs["inv_b"]) == {
        "data": {"invoice": {"id": two_orgs["inv_b"]}}
    }


def test_pagination_walks_every_invoice_once_while_new_ones_arrive(
    api: Api, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="walker")
        token = make_token(s, org)
        original = set()
        for i in range(23):
            month = date(2025, 1 + i % 12, 1)
            inv = make_invoice(
                s,
                org,
                status="open",
                lines=1,
                period_start=month,
                period_end=date(month.year + (month.month == 12), month.month % 12 + 1, 1),
            )
            original.add(inv.public_id)
    seen: list[str] = []
    after = None
    while True:
        page = api.data(PAGE, token, first=5, after=after)["invoices"]
        seen += [e["node"]["id"] for e in page["edges"]]
        # New invoices land while the client pages: newer periods and, worse, the same periods.
        with committed() as s, s.begin():
            make_invoice(
                s,
                org,
                status="open",
                lines=1,
                period_start=date(2026, 6, 1),
                period_end=date(2026, 7, 1),
            )
            make_invoice(
                s,
                org,
                status="open",
                lines=1,
                period_start=date(2025, 6, 1),
                period_end=date(2025, 7, 1),
            )
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert len(seen) == len(set(seen)), "an invoice was served twice"
    assert original <= set(seen), "an invoice that existed when the walk began was skipped"


def test_order_is_newest_period_first(api: Api, committed: sessionmaker[Session]) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="order")
        token = make_token(s, org)
        for m in (3, 1, 2):
            make_invoice(
                s, org, lines=1, period_start=date(2026, m, 1), period_end=date(2026, m + 1, 1)
            )
    q = "{ invoices(first: 10) { nodes { periodStart } } }"
    starts = [n["periodStart"] for n in api.data(q, token)["invoices"]["nodes"]]
    assert starts == ["2026-03-01", "2026-02-01", "2026-01-01"]


def test_filters(api: Api, committed: sessionmaker[Session]) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="filters")
        token = make_token(s, org)
        make_invoice(
            s, org, status="draft", period_start=date(2026, 1, 1), period_end=date(2026, 2, 1)
        )
        make_invoice(
            s, org, status="open", period_start=date(2026, 2, 1), period_end=date(2026, 3, 1)
        )
        make_invoice(
            s, org, status="paid", period_start=date(2026, 3, 1), period_end=date(2026, 4, 1)
        )
        make_invoice(
            s,
            org,
            status="void",
            currency="EUR",
            period_start=date(2026, 4, 1),
            period_end=date(2026, 5, 1),
        )

    def statuses(f: dict[str, object]) -> list[str]:
        nodes = api.data(PAGE, token, first=50, filter=f)["invoices"]["edges"]
        return sorted(e["node"]["status"] for e in nodes)

    assert statuses({"status": ["OPEN", "PAID"]}) == ["OPEN", "PAID"]
    assert statuses({"currency": "eur"}) == ["VOID"]
    assert statuses({"periodFrom": "2026-02-01", "periodTo": "2026-04-01"}) == ["OPEN", "PAID"]
    assert statuses({"syncStatus": ["NOT_REQUIRED"]}) == ["DRAFT"]
    assert statuses({"syncStatus": ["PENDING"]}) == ["OPEN", "PAID", "VOID"]
    bad = api.gql(PAGE, token, first=5, filter={"currency": "xyz"})
    assert bad["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"


def test_money_above_32_bits_is_exact(api: Api, committed: sessionmaker[Session]) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="bigspender")
        token = make_token(s, org)
        inv = make_invoice(s, org, lines=0)
        lifecycle.add_lines(s, inv, [usage_line(quantity="3", unit_price="1000000000.5")], now=NOW)
        lifecycle.finalize(s, inv, now=NOW, rollup_shards=SHARDS)
    q = "{ invoices(first: 1) { nodes { total { cents currency formatted } lineItems { nodes { quantity unitPrice } } } } }"
    node = api.data(q, token)["invoices"]["nodes"][0]
    assert node["total"] == {
        "cents": "3000000002",
        "currency": "USD",
        "formatted": "$30,000,000.02",
    }
    assert int(node["total"]["cents"]) > 2**31
    assert node["lineItems"]["nodes"] == [{"quantity": "3", "unitPrice": "1000000000.5"}]
    summary = api.data("{ monthlySummary(years: [2026]) { month total { cents } } }", token)
    feb = next(m for m in summary["monthlySummary"] if m["month"] == "2026-02")
    assert feb["total"]["cents"] == "3000000002"


def test_sub_cent_prices_and_fractional_quantities_round_trip(
    api: Api, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="subcent")
        token = make_token(s, org)
        inv = make_invoice(s, org, lines=0)
        lifecycle.add_lines(
            s, inv, [usage_line(quantity="1234.5", unit_price="0.000000268")], now=NOW
        )
    q = "{ invoices(first: 1) { nodes { lineItems { nodes { quantity unitPrice amount { cents } } } } } }"
    line = api.data(q, token)["invoices"]["nodes"][0]["lineItems"]["nodes"][0]
    assert (Decimal(line["quantity"]), Decimal(line["unitPrice"])) == (
        Decimal("1234.5"),
        Decimal("0.000000268"),
    )
    assert line["amount"]["cents"] == "0"


@pytest.mark.parametrize(
    ("query", "needle"),
    [
        ("{ invoices(first: 101) { nodes { id } } }", "first must be between 0 and 100"),
        (
            "{ invoices { nodes { lineItems(first: 500) { nodes { id } } } } }",
            "first must be between 0 and 100",
        ),
        (
            "{ " + "invoices { nodes { organization { " * 5 + "slug" + " } } }" * 5 + " }",
            "levels deep; at most 12",
        ),
        ("{ " + " ".join(f"a{i}: viewer {{ isAdmin }}" for i in range(25)) + " }", "aliases"),
    ],
)
def test_limits_are_refused_with_a_clear_error(
    api: Api, two_orgs: dict[str, str], query: str, needle: str
) -> None:
    body = api.gql(query, two_orgs["a"])
    assert body.get("errors"), body
    assert needle in body["errors"][0]["message"]
    assert "Traceback" not in str(body)


def test_a_page_of_50_costs_a_constant_number_of_queries(
    api: Api, committed: sessionmaker[Session], engine: object
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="counted")
        token = make_token(s, org)
        for _ in range(60):
            make_invoice(s, org, status="open", lines=12)
    q = """{ invoices(first: 50) { totalCount pageInfo { hasNextPage endCursor } nodes {
        id number total { formatted } organization { slug name }
        lineItems(first: 10) { totalCount pageInfo { hasNextPage } nodes { id description amount { cents } } }
        syncState { status attempts lastError { message } } } } }"""
    app_engine = api.client.app.state.engine  # type: ignore[attr-defined]
    with QueryCounter(app_engine) as counter:
        data = api.data(q, token)
    nodes = data["invoices"]["nodes"]
    assert len(nodes) == 50 and all(len(n["lineItems"]["nodes"]) == 10 for n in nodes)
    # 1 token lookup + page + count + line items + sync states + organizations.
    non_auth = [s for s in counter.statements if "api_tokens" not in s]
    assert len(non_auth) <= 5, non_auth


def test_schema_file_is_current() -> None:
    committed_sdl = (PROJECT_ROOT / "schema.graphql").read_text()
    assert committed_sdl == sdl(), "schema.graphql is stale: run `make schema`"


def test_health_endpoints(api: Api) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok", "service": "billing-api"}
    ready = api.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "redis": "ok"}
    metrics = api.client.get("/metrics").text
    assert "billing_graphql_request_seconds" in metrics
    assert api.client.get("/healthz").headers["x-request-id"]


def test_an_organization_reads_the_same_by_every_path(api: Api, two_orgs: dict[str, str]) -> None:
    """Root `organization`, `viewer.organizations` and `invoice.organization` all answer the
    same object, every field included (the type resolves from the row each of them returns)."""
    fields = """id slug name billingEmail defaultCurrency invoicePrefix
      invoices(first: 5) { totalCount nodes { id } }
      monthlySummary(years: [2026]) { month currency invoiceCount }
      syncHealth { notRequired pending synced failed }"""
    data = api.data(
        f"""query($id: ID!) {{
          organization(slug: "alpha") {{ {fields} }}
          viewer {{ organizations {{ {fields} }} }}
          invoice(id: $id) {{ organization {{ {fields} }} }} }}""",
        two_orgs["a"],
        id=two_orgs["inv_a"],
    )
    org = data["organization"]
    assert org["slug"] == "alpha" and org["id"].startswith("org_")
    assert org["defaultCurrency"] == "USD" and org["invoicePrefix"] == "ALPHA"
    assert org["invoices"] == {"totalCount": 1, "nodes": [{"id": two_orgs["inv_a"]}]}
    assert org["syncHealth"]["pending"] == 1 and len(org["monthlySummary"]) == 12
    assert data["viewer"]["organizations"] == [org]
    assert data["invoice"]["organization"] == org
