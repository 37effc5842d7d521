"""Mutations over HTTP: each success path, each user error with the database unchanged, the
admin-only guard, and the sync enqueue after commit."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token

TABLES = (
    "invoices",
    "invoice_items",
    "invoice_sync",
    "invoice_monthly_rollups",
    "invoice_number_sequences",
)
PAYLOAD = "invoice { id number status currency lineItemCount total { cents } syncState { status attempts } } userErrors { field code message }"


def snapshot(factory: sessionmaker[Session]) -> dict[str, list[tuple[Any, ...]]]:
    with factory() as s:
        return {
            t: [tuple(r) for r in s.execute(sa.text(f"SELECT * FROM {t} ORDER BY 1, 2"))]
            for t in TABLES
        }


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, Any]:
    with committed() as s, s.begin():
        acme, other = make_org(s, slug="acme"), make_org(s, slug="other")
        return {
            "admin": make_token(s, None, admin=True),
            "member": make_token(s, acme),
            "draft": make_invoice(s, acme, lines=2).public_id,
            "empty": make_invoice(s, acme, lines=0).public_id,
            "open": make_invoice(s, acme, status="open").public_id,
            "paid": make_invoice(s, acme, status="paid").public_id,
            "void": make_invoice(s, acme, status="void").public_id,
            "other_open": make_invoice(s, other, status="open").public_id,
        }


def _input_type(mutation: str) -> str:
    return {
        "createInvoice": "CreateInvoiceInput",
        "addLineItems": "AddLineItemsInput",
        "resyncInvoice": "ResyncInvoiceInput",
        "retryFailedSyncs": "RetryFailedSyncsInput",
    }.get(mutation, "InvoiceIdInput")


def call(
    api: Api, token: str, mutation: str, input: dict[str, Any], payload: str = PAYLOAD
) -> dict[str, Any]:
    name = mutation[0].upper() + mutation[1:]
    body = api.gql(
        f"mutation {name}($input: {_input_type(mutation)}!) {{ {mutation}(input: $input) {{ {payload} }} }}",
        token,
        input=input,
    )
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"][mutation]
    return result


def line(**overrides: Any) -> dict[str, Any]:
    base = {
        "kind": "USAGE",
        "description": "Shared CPU, ams",
        "product": "machines-shared-cpu",
        "app": "web",
        "region": "ams",
        "unit": "second",
        "quantity": "1234.5",
        "unitPrice": "0.0000268",
    }
    base.update(overrides)
    return base


def test_create_add_finalize_pay(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    created = call(
        api,
        world["admin"],
        "createInvoice",
        {
            "organizationSlug": "acme",
            "currency": "eur",
            "periodStart": "2026-10-01",
            "periodEnd": "2026-11-01",
        },
    )
    assert created["userErrors"] == []
    inv = created["invoice"]
    assert (inv["status"], inv["currency"], inv["syncState"]["status"]) == (
        "DRAFT",
        "EUR",
        "NOT_REQUIRED",
    )
    added = call(
        api,
        world["admin"],
        "addLineItems",
        {
            "invoiceId": inv["id"],
            "items": [
                line(),
                line(
                    kind="EGRESS" if False else "USAGE",
                    product="egress",
                    unit="GB",
                    quantity="37.25",
                    unitPrice="2",
                ),
                line(
                    kind="CREDIT",
                    description="Reserved compute credit",
                    product="credit",
                    unit="month",
                    quantity="1",
                    unitPrice="-50",
                ),
            ],
        },
    )
    assert added["userErrors"] == [] and added["invoice"]["lineItemCount"] == 3
    assert added["invoice"]["total"]["cents"] == str(0 + 74 - 50)
    finalized = call(api, world["admin"], "finalizeInvoice", {"invoiceId": inv["id"]})
    assert finalized["userErrors"] == []
    assert (
        finalized["invoice"]["status"] == "OPEN" and finalized["invoice"]["number"] == "ACME-0004"
    )
    assert finalized["invoice"]["syncState"]["status"] == "PENDING"
    paid = call(
        api, world["admin"], "markInvoicePaid", {"invoiceId": finalized["invoice"]["number"]}
    )
    assert paid["invoice"]["status"] == "PAID"
    with committed() as s:
        invoice_id = s.execute(
            sa.text("SELECT id FROM invoices WHERE public_id = :p"), {"p": inv["id"]}
        ).scalar_one()
    # Finalize enqueues the sync once, after commit; markInvoicePaid once more, to tell Stripe.
    assert api.enqueued == [invoice_id, invoice_id]


def test_void_and_uncollectible(api: Api, world: dict[str, Any]) -> None:
    un = call(api, world["admin"], "markInvoiceUncollectible", {"invoiceId": world["open"]})
    assert un["invoice"]["status"] == "UNCOLLECTIBLE"
    voided = call(api, world["admin"], "voidInvoice", {"invoiceId": world["open"]})
    assert (
        voided["invoice"]["status"] == "VOID"
        and voided["invoice"]["syncState"]["status"] == "PENDING"
    )
    assert len(api.enqueued) == 1


@pytest.mark.parametrize(
    ("mutation", "input", "code", "field"),
    [
        (
            "createInvoice",
            {
                "organizationSlug": "acme",
                "currency": "usx",
                "periodStart": "2026-01-01",
                "periodEnd": "2026-02-01",
            },
            "UNKNOWN_CURRENCY",
            ["currency"],
        ),
        (
            "createInvoice",
            {
                "organizationSlug": "acme",
                "currency": "usd",
                "periodStart": "2026-02-01",
                "periodEnd": "2026-02-01",
            },
            "INVALID_PERIOD",
            ["periodEnd"],
        ),
        (
            "createInvoice",
            {
                "organizationSlug": "nope",
                "currency": "usd",
                "periodStart": "2026-01-01",
                "periodEnd": "2026-02-01",
            },
            "NOT_FOUND",
            ["organizationSlug"],
        ),
        (
            "addLineItems",
            {"invoiceId": "@draft", "items": [line(), line(quantity="-1")]},
            "NEGATIVE_QUANTITY",
            ["items", "1", "quantity"],
        ),
        (
            "addLineItems",
            {"invoiceId": "@draft", "items": [line(unitPrice="0.0000000000001")]},
            "TOO_MANY_DECIMALS",
            ["items", "0", "unitPrice"],
        ),
        (
            "addLineItems",
            {"invoiceId": "@draft", "items": [line(unitPrice="-3")]},
            "NEGATIVE_PRICE",
            ["items", "0", "unitPrice"],
        ),
        (
            "addLineItems",
            {"invoiceId": "@draft", "items": [line(quantity="1e")]},
            "INVALID_VALUE",
            ["items", "0", "quantity"],
        ),
        (
            "addLineItems",
            {
                "invoiceId": "@draft",
                "items": [line(periodStart="2026-02-02", periodEnd="2026-02-01")],
            },
            "INVALID_PERIOD",
            ["items", "0", "periodEnd"],
        ),
        (
            "addLineItems",
            {"invoiceId": "@draft", "items": [line(metadata=[1, 2])]},
            "INVALID_VALUE",
            ["items", "0", "metadata"],
        ),
        ("addLineItems", {"invoiceId": "@draft", "items": []}, "INVALID_VALUE", ["items"]),
        (
            "addLineItems",
            {"invoiceId": "@open", "items": [line()]},
            "INVOICE_NOT_DRAFT",
            ["invoiceId"],
        ),
        ("finalizeInvoice", {"invoiceId": "@empty"}, "EMPTY_INVOICE", ["invoiceId"]),
        ("finalizeInvoice", {"invoiceId": "@open"}, "INVALID_TRANSITION", ["invoiceId"]),
        ("finalizeInvoice", {"invoiceId": "inv_missing"}, "NOT_FOUND", ["invoiceId"]),
        ("markInvoicePaid", {"invoiceId": "@draft"}, "INVALID_TRANSITION", ["invoiceId"]),
        ("markInvoicePaid", {"invoiceId": "@void"}, "INVALID_TRANSITION", ["invoiceId"]),
        ("markInvoiceUncollectible", {"invoiceId": "@paid"}, "INVALID_TRANSITION", ["invoiceId"]),
        ("voidInvoice", {"invoiceId": "@paid"}, "INVALID_TRANSITION", ["invoiceId"]),
        ("voidInvoice", {"invoiceId": "@draft"}, "INVALID_TRANSITION", ["invoiceId"]),
        ("resyncInvoice", {"invoiceId": "@draft"}, "INVALID_TRANSITION", ["invoiceId"]),
    ],
)
def test_user_errors_change_nothing(
    api: Api,
    world: dict[str, Any],
    committed: sessionmaker[Session],
    mutation: str,
    input: dict[str, Any],
    code: str,
    field: list[str],
) -> None:
    if isinstance(input.get("invoiceId"), str) and input["invoiceId"].startswith("@"):
        input = {**input, "invoiceId": world[input["invoiceId"][1:]]}
    before = snapshot(committed)
    result = call(api, world["admin"], mutation, input)
    assert result["invoice"] is None
    assert [(e["code"], e["field"]) for e in result["userErrors"]] == [(code, field)]
    assert result["userErrors"][0]["message"]
    assert snapshot(committed) == before
    assert api.enqueued == []


def test_members_cannot_write_invoices(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    before = snapshot(committed)
    body = api.gql(
        "mutation($id: ID!) { finalizeInvoice(input: {invoiceId: $id}) { userErrors { code } } }",
        world["member"],
        id=world["draft"],
    )
    assert body["data"] is None and body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert snapshot(committed) == before


def test_another_organizations_invoice_is_not_found_for_a_member(
    api: Api, world: dict[str, Any]
) -> None:
    result = call(api, world["member"], "resyncInvoice", {"invoiceId": world["other_open"]})
    assert [e["code"] for e in result["userErrors"]] == ["NOT_FOUND"]


@pytest.mark.parametrize(
    ("mutation", "input"),
    [
        ("createInvoice", {"organizationSlug": "other"}),
        ("retryFailedSyncs", {"organizationSlug": "other"}),
        ("finalizeInvoice", {"invoiceId": "@other_open"}),
        ("voidInvoice", {"invoiceId": "@other_open"}),
    ],
)
def test_admin_mutations_are_forbidden_to_members_whatever_they_name(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session], mutation: str, input: Any
) -> None:
    """The permission is decided before any lookup, so a member learns nothing about what it
    named: another organization's slug or invoice gets the same FORBIDDEN as its own."""
    full = {
        "createInvoice": {
            "currency": "usd",
            "periodStart": "2026-01-01",
            "periodEnd": "2026-02-01",
        },
    }.get(mutation, {})
    for value in (input, {k: "@open" if k == "invoiceId" else "acme" for k in input}):
        given = {k: world[v[1:]] if v.startswith("@") else v for k, v in value.items()}
        before = snapshot(committed)
        body = api.gql(
            f"mutation($input: {_input_type(mutation)}!) {{ {mutation}(input: $input) {{ userErrors {{ code }} }} }}",
            world["member"],
            input={**full, **given},
        )
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["FORBIDDEN"]
        assert snapshot(committed) == before


def test_resync_of_another_organizations_invoice_is_not_found_like_a_missing_one(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    before = snapshot(committed)
    for ref in (world["other_open"], "inv_missing", "OTHER-0001"):
        result = call(api, world["member"], "resyncInvoice", {"invoiceId": ref})
        assert result["invoice"] is None
        assert [(e["code"], e["field"]) for e in result["userErrors"]] == [
            ("NOT_FOUND", ["invoiceId"])
        ]
    assert snapshot(committed) == before and api.enqueued == []


def test_resync_of_a_failed_invoice_resets_it(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        s.execute(
            sa.text(
                "UPDATE invoice_sync SET state = 'failed', attempts = 8, next_attempt_at = NULL, last_error_code = 'x' "
                "WHERE invoice_id = (SELECT id FROM invoices WHERE public_id = :p)"
            ),
            {"p": world["open"]},
        )
    result = call(api, world["member"], "resyncInvoice", {"invoiceId": world["open"]})
    assert result["userErrors"] == []
    assert result["invoice"]["syncState"] == {"status": "PENDING", "attempts": 0}
    assert len(api.enqueued) == 1
    body = api.data(
        "mutation { retryFailedSyncs(input: {}) { count userErrors { code } } }", world["admin"]
    )
    assert body["retryFailedSyncs"] == {"count": 0, "userErrors": []}


def test_retry_failed_syncs_is_admin_only_and_counts(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        s.execute(sa.text("UPDATE invoice_sync SET state = 'failed', next_attempt_at = NULL"))
    q = "mutation($slug: String) { retryFailedSyncs(input: {organizationSlug: $slug}) { count userErrors { code field } } }"
    assert api.gql(q, world["member"])["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert (
        api.data(q, world["admin"], slug="acme")["retryFailedSyncs"]["count"] == 3
    )  # open, paid, void
    assert api.data(q, world["admin"])["retryFailedSyncs"]["count"] == 1  # the other org's
    missing = api.data(q, world["admin"], slug="ghost")["retryFailedSyncs"]
    assert missing == {
        "count": 0,
        "userErrors": [{"code": "NOT_FOUND", "field": ["organizationSlug"]}],
    }
