"""Strict scalars over HTTP: decimals only as plain strings, currencies exactly three ASCII
letters, dates within 2000..2100, metadata bounded, lone surrogates as userErrors, and a batch
reporting every bad line at once. Each refusal leaves the database unchanged."""

from __future__ import annotations

import json
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token

ADD = "mutation($input: AddLineItemsInput!) { addLineItems(input: $input) { invoice { lineItemCount } userErrors { field code message } } }"
CREATE = "mutation($input: CreateInvoiceInput!) { createInvoice(input: $input) { invoice { id currency } userErrors { field code } } }"


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, Any]:
    with committed() as s, s.begin():
        acme = make_org(s, slug="acme")
        return {"admin": make_token(s, None, admin=True), "draft": make_invoice(s, acme, lines=0)}


def line(**overrides: Any) -> dict[str, Any]:
    base = {
        "kind": "USAGE",
        "description": "Shared CPU, ams",
        "product": "machines-shared-cpu",
        "unit": "second",
        "quantity": "1234.5",
        "unitPrice": "0.0000268",
    }
    return {**base, **overrides}


def item_count(committed: sessionmaker[Session]) -> int:
    with committed() as s:
        return int(s.execute(sa.text("SELECT count(*) FROM invoice_items")).scalar_one())


def gql(api: Api, token: str, query: str, **variables: Any) -> dict[str, Any]:
    """Like Api.gql, but JSON-encoded with escapes, so a lone surrogate travels as "\\ud800"
    exactly as a JavaScript client sends it (httpx would refuse to encode it as UTF-8)."""
    response = api.client.post(
        "/graphql",
        content=json.dumps({"query": query, "variables": variables}),
        headers={"content-type": "application/json", "authorization": f"Bearer {token}"},
    )
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def add(api: Api, world: dict[str, Any], *items: dict[str, Any]) -> dict[str, Any]:
    variables = {"invoiceId": world["draft"].public_id, "items": list(items)}
    return gql(api, world["admin"], ADD, input=variables)


def test_a_decimal_sent_as_a_json_number_is_refused_not_rounded(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    body = add(api, world, line(quantity=12345678901.123456789))
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
    assert item_count(committed) == 0


@pytest.mark.parametrize("text", ["1_000", "١٢٣", " 1 ", "1e3", "+1", "1.", ".5", "NaN", ""])
def test_decimals_outside_the_plain_grammar_are_user_errors(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session], text: str
) -> None:
    payload = add(api, world, line(quantity=text))["data"]["addLineItems"]
    assert payload["invoice"] is None
    assert payload["userErrors"][0]["field"] == ["items", "0", "quantity"]
    assert payload["userErrors"][0]["code"] == "INVALID_VALUE"
    assert item_count(committed) == 0


def test_a_plain_decimal_keeps_every_digit(api: Api, world: dict[str, Any]) -> None:
    payload = add(api, world, line(quantity="12345678901.123456789", unitPrice="0"))
    assert payload["data"]["addLineItems"]["userErrors"] == []
    q = "query($id: ID!) { invoice(id: $id) { lineItems { nodes { quantity } } } }"
    data = api.data(q, world["admin"], id=world["draft"].public_id)
    assert data["invoice"]["lineItems"]["nodes"] == [{"quantity": "12345678901.123456789"}]


@pytest.mark.parametrize("code", ["usd\n", " usd", "US D", "\uff35\uff33\uff24", "usdx"])
def test_currencies_are_exactly_three_ascii_letters(
    api: Api, world: dict[str, Any], code: str
) -> None:
    body = api.gql(
        CREATE,
        world["admin"],
        input={
            "organizationSlug": "acme",
            "currency": code,
            "periodStart": "2026-01-01",
            "periodEnd": "2026-02-01",
        },
    )
    assert body["data"]["createInvoice"]["userErrors"] == [
        {"field": ["currency"], "code": "UNKNOWN_CURRENCY"}
    ]


@pytest.mark.parametrize(
    "day", ["0001-01-01", "9999-12-01", "1999-12-31", "2101-01-01", "2026-1-01"]
)
def test_dates_outside_2000_2100_are_refused(api: Api, world: dict[str, Any], day: str) -> None:
    body = api.gql(
        CREATE,
        world["admin"],
        input={
            "organizationSlug": "acme",
            "currency": "usd",
            "periodStart": day,
            "periodEnd": "2100-12-31",
        },
    )
    assert body["data"] is None
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"n": value}
    return value


@pytest.mark.parametrize(
    ("metadata", "ok"),
    [
        (_nested(5), True),
        (_nested(6), False),
        ({"k": "x" * 16_000}, True),
        ({"k": "x" * 16_400}, False),
    ],
    ids=["depth 5", "depth 6", "16 KB", "past 16 KB"],
)
def test_metadata_is_bounded_in_depth_and_size(
    api: Api, world: dict[str, Any], metadata: dict[str, Any], ok: bool
) -> None:
    payload = add(api, world, line(metadata=metadata))["data"]["addLineItems"]
    if ok:
        assert payload["userErrors"] == []
    else:
        assert payload["userErrors"][0]["field"] == ["items", "0", "metadata"]


@pytest.mark.parametrize("field", ["description", "product", "app"])
def test_a_lone_surrogate_in_text_is_a_user_error(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session], field: str
) -> None:
    payload = add(api, world, line(**{field: "a\ud800b"}))["data"]["addLineItems"]
    assert payload["userErrors"][0]["field"] == ["items", "0", field]
    assert payload["userErrors"][0]["code"] == "INVALID_VALUE"
    assert item_count(committed) == 0


def test_a_lone_surrogate_in_an_id_is_not_found(api: Api, world: dict[str, Any]) -> None:
    body = gql(api, world["admin"], ADD, input={"invoiceId": "inv_\ud800", "items": [line()]})
    assert body["data"]["addLineItems"]["userErrors"][0]["code"] == "NOT_FOUND"
    query = "query($id: ID!) { invoice(id: $id) { id } }"
    assert gql(api, world["admin"], query, id="a\ud800b") == {"data": {"invoice": None}}


def test_every_bad_line_of_a_batch_is_reported_at_once(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    payload = add(api, world, line(), line(quantity="-1"), line(), line(unitPrice="1_0"))["data"][
        "addLineItems"
    ]
    assert [(e["field"], e["code"]) for e in payload["userErrors"]] == [
        (["items", "1", "quantity"], "NEGATIVE_QUANTITY"),
        (["items", "3", "unitPrice"], "INVALID_VALUE"),
    ]
    assert item_count(committed) == 0
