"""Credit notes over HTTP: issueCreditNote / voidCreditNote (admin, idempotent), the invoice's
credited / paid / due amounts, Invoice.creditNotes and Organization.creditNotes (members see
their own), monthlySummary's credited and net, and userErrors that write nothing."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from models import tables
from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token

ISSUE = """
mutation($input: IssueCreditNoteInput!, $key: String) {
  issueCreditNote(input: $input, idempotencyKey: $key) {
    creditNote { id number status reason memo total { cents } refund { cents }
                 customerBalance { cents } lines { lineItemId quantity amount { cents } } }
    userErrors { field code message }
  }
}"""
VOID = """
mutation($input: VoidCreditNoteInput!) {
  voidCreditNote(input: $input) { creditNote { number status } userErrors { field code } }
}"""
INVOICE = """
query($id: ID!) { invoice(id: $id) {
  total { cents } creditedTotal { cents } amountPaid { cents } amountDue { cents }
  creditNotes { number status total { cents } }
  lineItems { nodes { id amount { cents } } }
} }"""


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, Any]:
    with committed() as s, s.begin():
        acme, other = make_org(s, slug="acme"), make_org(s, slug="other")
        return {
            "admin": make_token(s, None, admin=True),
            "member": make_token(s, acme),
            "other_member": make_token(s, other),
            "open": make_invoice(s, acme, status="open", lines=2).public_id,  # 250 + 500
            "paid": make_invoice(s, acme, status="paid", lines=1).public_id,  # 250
            "void": make_invoice(s, acme, status="void").public_id,
        }


def _counts(factory: sessionmaker[Session]) -> tuple[int, int, int]:
    with factory() as s:
        return tuple(  # type: ignore[return-value]
            s.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar_one()
            for t in ("credit_notes", "credit_note_lines", "idempotency_keys")
        )


def test_issue_on_open_invoice_then_void(api: Api, world: dict[str, Any]) -> None:
    admin = world["admin"]
    inv = api.data(INVOICE, admin, id=world["open"])["invoice"]
    first_line = inv["lineItems"]["nodes"][0]["id"]
    out = api.data(
        ISSUE,
        admin,
        input={
            "invoiceId": world["open"],
            "reason": "DUPLICATE",
            "memo": "billed twice",
            "lines": [
                {"lineItemId": first_line, "quantity": "1"},
                {"description": "goodwill", "amount": "50"},
            ],
        },
        key="k-1",
    )["issueCreditNote"]
    assert out["userErrors"] == []
    note = out["creditNote"]
    assert note["number"].endswith("-CN1") and note["total"]["cents"] == "300"
    assert note["lines"] == [
        {"lineItemId": first_line, "quantity": "1", "amount": {"cents": "250"}},
        {"lineItemId": None, "quantity": None, "amount": {"cents": "50"}},
    ]
    assert api.enqueued  # the invoice's sync carries the credit note to Stripe
    inv = api.data(INVOICE, world["member"], id=world["open"])["invoice"]
    assert (inv["creditedTotal"], inv["amountPaid"], inv["amountDue"]) == (
        {"cents": "300"},
        {"cents": "0"},
        {"cents": "450"},
    )
    assert [c["number"] for c in inv["creditNotes"]] == [note["number"]]
    voided = api.data(VOID, admin, input={"creditNoteId": note["id"]})["voidCreditNote"]
    assert voided["creditNote"]["status"] == "VOID"
    inv = api.data(INVOICE, admin, id=world["open"])["invoice"]
    assert inv["amountDue"] == {"cents": "750"}


def test_idempotency_key_replays_the_first_credit_note(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    body = {
        "invoiceId": world["open"],
        "reason": "ORDER_CHANGE",
        "lines": [{"description": "x", "amount": "10"}],
    }
    a = api.data(ISSUE, world["admin"], input=body, key="same")["issueCreditNote"]
    b = api.data(ISSUE, world["admin"], input=body, key="same")["issueCreditNote"]
    assert a == b and _counts(committed)[0] == 1


def test_paid_invoice_settlement_and_errors_write_nothing(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    admin = world["admin"]
    base = {"invoiceId": world["paid"], "reason": "PRODUCT_UNSATISFACTORY"}
    line = [{"description": "partial refund", "amount": "100"}]
    before = _counts(committed)
    cases = [
        ({**base, "lines": line}, "INVALID_SETTLEMENT"),
        ({**base, "lines": line, "settlement": {"refund": "99"}}, "INVALID_SETTLEMENT"),
        (
            {
                **base,
                "lines": [{"description": "x", "amount": "251"}],
                "settlement": {"refund": "251"},
            },
            "OVER_CREDIT",
        ),
        ({**base, "invoiceId": world["void"], "lines": line}, "INVALID_TRANSITION"),
    ]
    for body, code in cases:
        out = api.data(ISSUE, admin, input=body, key=f"k-{code}-{len(str(body))}")[
            "issueCreditNote"
        ]
        assert out["creditNote"] is None and out["userErrors"][0]["code"] == code, out
    assert _counts(committed) == before
    ok = api.data(
        ISSUE,
        admin,
        input={**base, "lines": line, "settlement": {"refund": "60", "customerBalance": "40"}},
    )["issueCreditNote"]
    assert ok["creditNote"]["refund"] == {"cents": "60"}
    assert ok["creditNote"]["customerBalance"] == {"cents": "40"}
    inv = api.data(INVOICE, admin, id=world["paid"])["invoice"]
    assert (inv["amountPaid"], inv["amountDue"]) == ({"cents": "150"}, {"cents": "0"})


def test_members_cannot_issue_and_see_only_their_own(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    body = {
        "invoiceId": world["open"],
        "reason": "DUPLICATE",
        "lines": [{"description": "x", "amount": "5"}],
    }
    denied = api.gql(ISSUE, world["member"], input=body)
    assert denied["errors"] and _counts(committed)[0] == 0
    api.data(ISSUE, world["admin"], input=body)
    q = '{ organization(slug: "acme") { creditNotes(first: 10) { nodes { number total { cents } } } } }'
    mine = api.data(q, world["member"])["organization"]["creditNotes"]["nodes"]
    assert len(mine) == 1
    assert api.data(q, world["other_member"])["organization"] is None
    with committed() as s:
        number = s.exec(select(tables.CreditNote.number)).one()
    hidden = api.data(VOID, world["admin"], input={"creditNoteId": "nope"})["voidCreditNote"]
    assert hidden["userErrors"][0]["code"] == "NOT_FOUND"
    assert number.endswith("-CN1")


def test_monthly_summary_shows_credited_and_net(api: Api, world: dict[str, Any]) -> None:
    api.data(
        ISSUE,
        world["admin"],
        input={
            "invoiceId": world["open"],
            "reason": "DUPLICATE",
            "lines": [{"description": "x", "amount": "70"}],
        },
    )
    q = '{ organization(slug: "acme") { monthlySummary(years: [2026]) { monthOfYear total { cents } credited { cents } net { cents } } } }'
    months = api.data(q, world["member"])["organization"]["monthlySummary"]
    feb = next(m for m in months if m["monthOfYear"] == 2)
    # open 750 + paid 250 in February; 70 credited on the open one
    assert (feb["total"], feb["credited"], feb["net"]) == (
        {"cents": "1000"},
        {"cents": "70"},
        {"cents": "930"},
    )


def test_cli_issue_list_void(
    world: dict[str, Any],
    committed: sessionmaker[Session],
    database_url: str,
    redis_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import cli

    monkeypatch.setenv("DATABASE_URL", database_url)
    monkeypatch.setenv("REDIS_URL", redis_url)
    with committed() as s:
        inv = s.exec(select(tables.Invoice).where(tables.Invoice.public_id == world["open"])).one()
        item = s.exec(
            select(tables.InvoiceItem).where(tables.InvoiceItem.invoice_id == inv.id)
        ).first()
    assert item is not None
    args = ["credit-note", "issue", "--invoice", str(inv.number), "--reason", "duplicate"]
    args += [
        "--line",
        f"{item.public_id}:quantity=1",
        "--line",
        "custom:amount=25:description=Goodwill",
    ]
    assert cli.main(args) == 0
    assert f"issued {inv.number}-CN1" in capsys.readouterr().out
    assert cli.main([*args[:-4], "--line", "custom:amount=99999"]) == 2  # no description
    assert "INVALID_VALUE" in capsys.readouterr().err
    assert cli.main(["credit-note", "list", "--org", "acme"]) == 0
    listed = capsys.readouterr().out
    assert f"{inv.number}-CN1" in listed and "$2.75" in listed and "1 credit notes" in listed
    assert cli.main(["credit-note", "void", f"{inv.number}-CN1"]) == 0
    assert _counts(committed)[:2] == (1, 2)
    with committed() as s:
        assert s.exec(select(tables.CreditNote.status)).one() == "void"


def test_credit_outage_mutation_is_admin_idempotent_and_checked(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    mutation = """
    mutation($input: CreditOutageInput!) { creditOutage(input: $input) {
      alreadyDone incident { key region percent creditNotes draftLines
        organizations { slug credited { cents } } }
      userErrors { field code } } }"""
    body = {
        "region": "iad",
        "windowFrom": "2026-02-03T10:00:00Z",
        "windowTo": "2026-02-03T14:30:00Z",
        "products": "machines-*",
    }
    bad = api.data(mutation, world["admin"], input={**body, "windowTo": body["windowFrom"]})
    assert bad["creditOutage"]["userErrors"] == [{"field": ["to"], "code": "INVALID_VALUE"}]
    assert api.gql(mutation, world["member"], input=body)["errors"]  # admin only
    first = api.data(mutation, world["admin"], input=body)["creditOutage"]
    assert first["alreadyDone"] is False and first["incident"]["region"] == "iad"
    assert first["incident"]["organizations"] == []  # no usage events in that window
    again = api.data(mutation, world["admin"], input=body)["creditOutage"]
    assert again["alreadyDone"] is True and again["incident"]["key"] == first["incident"]["key"]
    preview = api.data(
        "query($input: CreditOutageInput!) { outageCreditPreview(input: $input) { slug } }",
        world["admin"],
        input=body,
    )
    assert preview["outageCreditPreview"] == []
    with committed() as s:
        assert s.execute(sa.text("SELECT count(*) FROM outage_incidents")).scalar_one() == 1


def test_outage_preview_with_bad_input_is_a_client_error(api: Api, world: dict[str, Any]) -> None:
    """Found by tests/test_api_fuzz.py: a window without a time zone (or an empty region) in
    the preview query answered INTERNAL_ERROR; a query has no userErrors, so it is a client
    error with the reason."""
    body = api.gql(
        'query { outageCreditPreview(input: { region: "", windowFrom: "2000-01-01T00:00:00",'
        ' windowTo: "2000-01-01T00:00:00" }) { slug } }',
        world["admin"],
    )
    (error,) = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
