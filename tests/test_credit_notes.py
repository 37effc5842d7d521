"""Credit notes (issue 21): the domain rules and the database guards behind them.

Given an invoice in each state, when a credit note is issued or voided, then the invoice's
credited / paid / due amounts, the rollup and the database's refusals are as documented in
models/invoices/credit_notes.py and migration 0009.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from models import rollup, tables
from models.errors import InvalidSettlement, InvalidTransition, NotFound, OverCredit
from models.invoices import credit_notes, lifecycle
from models.invoices.credit_notes import CreditLineInput, Settlement
from tests.factories import NOW, SHARDS, make_invoice, make_org, usage_line

LATER = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def _items(db: Session, inv: tables.Invoice) -> list[tables.InvoiceItem]:
    return list(
        db.exec(
            select(tables.InvoiceItem)
            .where(tables.InvoiceItem.invoice_id == inv.id)
            .order_by(tables.InvoiceItem.id)  # type: ignore[arg-type]
        )
    )


def _issue(
    db: Session,
    inv: tables.Invoice,
    lines: list[CreditLineInput],
    *,
    settlement: Settlement | None = None,
    reason: str = "duplicate",
) -> tables.CreditNote:
    return credit_notes.issue(
        db,
        inv,
        reason=reason,
        memo="billed twice",
        lines=lines,
        settlement=settlement,
        created_by="test",
        now=LATER,
        rollup_shards=SHARDS,
    )


def _amounts(db: Session, inv: tables.Invoice) -> credit_notes.InvoiceAmounts:
    assert inv.id is not None
    db.refresh(inv)
    credited = credit_notes.credited_by_invoice(db, [inv.id]).get(inv.id, 0)
    return credit_notes.invoice_amounts(inv, credited)


def _balanced_now(db: Session) -> None:
    """The sum check is deferred to commit; the test's outer transaction never commits."""
    db.execute(sa.text("SET CONSTRAINTS ALL IMMEDIATE"))


def test_credit_on_open_invoice_lowers_amount_due_and_is_numbered_per_invoice(
    db: Session,
) -> None:
    org = make_org(db, slug="acme")
    inv = make_invoice(db, org, status="open", lines=3)  # lines of 250, 500, 750
    items = _items(db, inv)
    first = _issue(db, inv, [CreditLineInput(line_item_id=items[0].public_id, quantity="1")])
    second = _issue(
        db, inv, [CreditLineInput(description="goodwill", amount_cents=100)], reason="order_change"
    )
    _balanced_now(db)
    assert first.number == f"{inv.number}-CN1" and second.number == f"{inv.number}-CN2"
    assert first.total_cents == 250 and not first.post_payment
    assert _amounts(db, inv) == credit_notes.InvoiceAmounts(350, 0, 1500 - 350)
    lines = credit_notes.lines_of(db, [second.id or 0])[second.id or 0]
    assert [(ln.invoice_item_id, ln.description, ln.amount_cents) for ln in lines] == [
        (None, "goodwill", 100)
    ]


def test_quantity_credit_rounds_half_even_once_per_line_and_the_rest_is_exact(
    db: Session,
) -> None:
    org = make_org(db)
    inv = lifecycle.create_draft(
        db,
        org,
        currency="USD",
        period_start=NOW.date().replace(day=1),
        period_end=NOW.date().replace(month=4, day=1),
        now=NOW,
    )
    # 3 x 0.5 = 1.5 -> 2 (half-even); crediting 1 unit: 0.5 -> 0 (even), not allowed (nothing);
    # crediting 1 of 5 x 2.5: 2.5 -> 2 (even), then the last 4 units take exactly what is left.
    lifecycle.add_lines(db, inv, [usage_line(quantity="5", unit_price="2.5")], now=NOW)
    inv = lifecycle.finalize(db, inv, now=NOW, rollup_shards=SHARDS)
    (item,) = _items(db, inv)
    assert item.amount_cents == 12  # 12.5 -> 12
    one = _issue(db, inv, [CreditLineInput(line_item_id=item.public_id, quantity="1")])
    assert one.total_cents == 2  # 2.5 -> 2, half-even
    two = _issue(db, inv, [CreditLineInput(line_item_id=item.public_id, quantity="3")])
    assert two.total_cents == 8  # 7.5 -> 8, half-even
    rest = _issue(db, inv, [CreditLineInput(line_item_id=item.public_id, quantity="1")])
    assert rest.total_cents == 2  # 2.5 would be 2; the last unit takes what is left: 12 - 10
    with pytest.raises(OverCredit):
        _issue(db, inv, [CreditLineInput(line_item_id=item.public_id, amount_cents=1)])


def test_over_credit_is_refused_by_the_domain_and_by_the_database(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open", lines=2)  # 250 + 500
    items = _items(db, inv)
    with pytest.raises(OverCredit) as e:
        _issue(db, inv, [CreditLineInput(line_item_id=items[0].public_id, amount_cents=251)])
    assert e.value.field == ("lines", "0", "amount")
    with pytest.raises(OverCredit):
        _issue(db, inv, [CreditLineInput(description="too much", amount_cents=751)])
    note = _issue(db, inv, [CreditLineInput(line_item_id=items[0].public_id, amount_cents=200)])
    # Behind the domain's back: a second line on the same invoice line past its amount.
    with pytest.raises(DBAPIError, match="would be credited 300 of its 250"), db.begin_nested():
        db.execute(
            sa.text(
                "INSERT INTO credit_note_lines (credit_note_id, invoice_item_id, description,"
                " amount_cents) VALUES (:n, :i, 'x', 100)"
            ),
            {"n": note.id, "i": items[0].id},
        )
    # And the invoice as a whole, with custom lines.
    with (
        pytest.raises(DBAPIError, match="the invoice would be credited 751 of its total 750"),
        db.begin_nested(),
    ):
        db.execute(
            sa.text(
                "INSERT INTO credit_note_lines (credit_note_id, description, amount_cents)"
                " VALUES (:n, 'x', 551)"
            ),
            {"n": note.id},
        )


def test_edits_after_issue_are_refused_by_the_database(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open", lines=1)
    (item,) = _items(db, inv)
    note = _issue(db, inv, [CreditLineInput(line_item_id=item.public_id, amount_cents=100)])
    statements = [
        "UPDATE credit_notes SET total_cents = 50 WHERE id = :n",
        "UPDATE credit_notes SET memo = 'changed' WHERE id = :n",
        "DELETE FROM credit_notes WHERE id = :n",
        "UPDATE credit_note_lines SET amount_cents = 50 WHERE credit_note_id = :n",
        "DELETE FROM credit_note_lines WHERE credit_note_id = :n",
    ]
    for sql in statements:
        with pytest.raises(DBAPIError, match=r"immutable|cannot be deleted"), db.begin_nested():
            db.execute(sa.text(sql), {"n": note.id})
    # A line added later makes the lines disagree with the total: refused at commit.
    with pytest.raises(DBAPIError, match="lines sum to 150, the total is 100"), db.begin_nested():
        db.execute(
            sa.text(
                "INSERT INTO credit_note_lines (credit_note_id, description, amount_cents)"
                " VALUES (:n, 'later', 50)"
            ),
            {"n": note.id},
        )
        _balanced_now(db)


def test_void_gives_the_amount_back_once(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open", lines=1)  # 250
    (item,) = _items(db, inv)
    note = _issue(db, inv, [CreditLineInput(line_item_id=item.public_id, quantity="1")])
    with pytest.raises(OverCredit):
        _issue(db, inv, [CreditLineInput(description="more", amount_cents=1)])
    credit_notes.void(db, note, now=LATER, rollup_shards=SHARDS)
    assert _amounts(db, inv).due_cents == 250
    again = _issue(db, inv, [CreditLineInput(line_item_id=item.public_id, quantity="1")])
    assert again.total_cents == 250 and again.number == f"{inv.number}-CN2"
    with pytest.raises(InvalidTransition):
        credit_notes.void(db, note, now=LATER, rollup_shards=SHARDS)
    with pytest.raises(DBAPIError, match="not a lifecycle transition"), db.begin_nested():
        db.execute(
            sa.text("UPDATE credit_notes SET status = 'issued', voided_at = NULL WHERE id = :n"),
            {"n": note.id},
        )


@pytest.mark.parametrize(
    ("settlement", "field"),
    [
        (Settlement(refund_cents=300), "refund_cents"),
        (Settlement(credit_balance_cents=300), "credit_balance_cents"),
        (Settlement(out_of_band_cents=300), "out_of_band_cents"),
        (Settlement(refund_cents=100, credit_balance_cents=150, out_of_band_cents=50), None),
    ],
)
def test_credit_on_paid_invoice_is_settled_as_stated(
    db: Session, settlement: Settlement, field: str | None
) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="paid", lines=2)  # 750 paid
    items = _items(db, inv)
    line = CreditLineInput(line_item_id=items[1].public_id, amount_cents=300)
    with pytest.raises(InvalidSettlement):
        _issue(db, inv, [line])  # a paid invoice's credit must say where the money goes
    with pytest.raises(InvalidSettlement):
        _issue(db, inv, [line], settlement=Settlement(refund_cents=299))
    note = _issue(db, inv, [line], settlement=settlement)
    assert note.post_payment
    assert note.refund_cents + note.credit_balance_cents + note.out_of_band_cents == 300
    if field:
        assert getattr(note, field) == 300
    assert _amounts(db, inv) == credit_notes.InvoiceAmounts(300, 450, 0)
    # Never more than what was paid.
    with pytest.raises(OverCredit):
        _issue(
            db,
            inv,
            [CreditLineInput(description="x", amount_cents=451)],
            settlement=Settlement(refund_cents=451),
        )


def test_settlement_on_unpaid_invoice_is_refused(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open", lines=1)
    with pytest.raises(InvalidSettlement):
        _issue(
            db,
            inv,
            [CreditLineInput(description="x", amount_cents=10)],
            settlement=Settlement(refund_cents=10),
        )


@pytest.mark.parametrize("status", ["void", "draft"])
def test_credit_on_void_or_draft_invoice_is_refused(db: Session, status: str) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status=status, lines=1)
    with pytest.raises(InvalidTransition):
        _issue(db, inv, [CreditLineInput(description="x", amount_cents=10)])


def test_invoice_with_issued_credit_notes_cannot_be_voided(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open", lines=1)
    note = _issue(db, inv, [CreditLineInput(description="x", amount_cents=10)])
    with pytest.raises(InvalidTransition, match="credit notes"):
        lifecycle.void(db, inv, now=LATER, rollup_shards=SHARDS)
    credit_notes.void(db, note, now=LATER, rollup_shards=SHARDS)
    lifecycle.void(db, inv, now=LATER, rollup_shards=SHARDS)
    assert rollup.verify(db) == []


def test_lines_are_validated_with_their_index(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open", lines=1)
    (item,) = _items(db, inv)
    with pytest.raises(NotFound) as nf:
        _issue(db, inv, [CreditLineInput(line_item_id="li_nope", amount_cents=1)])
    assert nf.value.field == ("lines", "0", "lineItemId")
    with pytest.raises(Exception, match="one of them"):
        _issue(
            db,
            inv,
            [CreditLineInput(line_item_id=item.public_id, amount_cents=1, quantity="1")],
        )
    with pytest.raises(Exception, match="unknown reason"):
        _issue(db, inv, [CreditLineInput(description="x", amount_cents=1)], reason="whim")


def test_rollup_counts_credits_in_the_invoice_month_and_verify_covers_them(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open", lines=2)  # February, 750
    assert inv.id is not None
    note = _issue(db, inv, [CreditLineInput(description="x", amount_cents=125)])
    months = rollup.monthly_summary(db, scope_id=org.id or 0, years=[2026])
    feb = next(m for m in months if m.month == 2)
    assert (feb.total_cents, feb.credited_cents, feb.net_cents) == (750, 125, 625)
    assert rollup.verify(db) == []
    db.execute(sa.text("UPDATE invoice_monthly_rollups SET credited_cents = 0"))
    diffs = rollup.verify(db)
    assert {d.expected[3] - d.stored[3] for d in diffs} == {125}
    rollup.rebuild(db, shards=SHARDS)
    assert rollup.verify(db) == []
    credit_notes.void(db, note, now=LATER, rollup_shards=SHARDS)
    assert rollup.verify(db) == []


_GROUP_BY = sa.text(
    """
    SELECT date_trunc('month', i.period_start)::date AS month, i.currency,
           sum(i.total_cents)::bigint AS total,
           coalesce(sum(c.credited), 0)::bigint AS credited
    FROM invoices i
    LEFT JOIN (SELECT invoice_id, sum(total_cents) AS credited FROM credit_notes
               WHERE status = 'issued' GROUP BY invoice_id) c ON c.invoice_id = i.id
    WHERE i.organization_id = :org AND i.status IN ('open', 'paid', 'uncollectible')
    GROUP BY 1, 2
    """
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    plan=st.lists(
        st.tuples(
            st.integers(1, 3),  # month of the invoice's period
            st.sampled_from(["open", "paid", "void"]),
            st.lists(st.integers(1, 400), max_size=3),  # credit note amounts (custom lines)
            st.booleans(),  # void the first credit note again
        ),
        min_size=1,
        max_size=6,
    )
)
def test_rollup_stays_exact_with_random_credit_notes(
    db: Session, plan: list[tuple[int, str, list[int], bool]]
) -> None:
    """Random invoices and credit notes: `rollup verify` finds nothing, and monthlySummary's
    total / credited / net equal a GROUP BY over invoices and credit notes."""
    with db.begin_nested() as example:
        org = make_org(db)
        assert org.id is not None
        for month, status, amounts, void_first in plan:
            inv = make_invoice(
                db,
                org,
                status="open",
                lines=2,  # 250 + 500
                period_start=datetime(2026, month, 1).date(),
                period_end=datetime(2026, month + 1, 1).date(),
            )
            notes = []
            for amount in amounts:
                try:
                    with db.begin_nested():
                        notes.append(
                            _issue(db, inv, [CreditLineInput(description="x", amount_cents=amount)])
                        )
                except OverCredit:
                    pass
            if void_first and notes:
                credit_notes.void(db, notes[0], now=LATER, rollup_shards=SHARDS)
            if status == "paid":
                lifecycle.mark_paid(db, inv, now=LATER, paid_on=lifecycle.PaidOn.HERE)
            elif status == "void" and (not notes or (void_first and len(notes) == 1)):
                lifecycle.void(db, inv, now=LATER, rollup_shards=SHARDS)
        assert rollup.verify(db) == []
        truth = {
            (r.month.month, r.currency.strip()): (int(r.total), int(r.credited))
            for r in db.execute(_GROUP_BY, {"org": org.id})
        }
        months = rollup.monthly_summary(db, scope_id=org.id, years=[2026])
        for m in months:
            total, credited = truth.get((m.month, m.currency), (0, 0))
            assert (m.total_cents, m.credited_cents, m.net_cents) == (
                total,
                credited,
                total - credited,
            )
        example.rollback()
