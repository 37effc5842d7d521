"""models/invoices/lifecycle.py (drafts, lines, finalize, pay, void, uncollectible) and the database's
guards on invoices (the immutability trigger, CHECKs): every transition allowed and refused,
immutability enforced by the database, bad values rejected with a coded error and nothing
written."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, select

from models import rollup, tables
from models.errors import (
    DomainError,
    EmptyInvoice,
    InvalidPeriod,
    InvalidTransition,
    InvalidValue,
    InvoiceNotDraft,
    NegativePrice,
    NegativeQuantity,
    TooManyDecimals,
    UnknownCurrency,
)
from models.invoices import lifecycle
from models.invoices.lifecycle import LineInput
from models.sync_state import outbox
from models.tables import LineItemKind
from tests.factories import NOW, SHARDS, make_invoice, make_org, usage_line

Action = Callable[[Session, tables.Invoice], tables.Invoice]
ACTIONS: dict[str, Action] = {
    "finalize": lambda s, i: lifecycle.finalize(s, i, now=NOW, rollup_shards=SHARDS),
    "paid": lambda s, i: lifecycle.mark_paid(s, i, now=NOW, paid_on=lifecycle.PaidOn.HERE),
    "void": lambda s, i: lifecycle.void(s, i, now=NOW, rollup_shards=SHARDS),
    "uncollectible": lambda s, i: lifecycle.mark_uncollectible(s, i, now=NOW),
}
# (from status, action) -> resulting status, or None when the transition is refused.
TRANSITIONS: dict[tuple[str, str], str | None] = {
    ("draft", "finalize"): "open",
    ("draft", "paid"): None,
    ("draft", "void"): None,
    ("draft", "uncollectible"): None,
    ("open", "finalize"): None,
    ("open", "paid"): "paid",
    ("open", "void"): "void",
    ("open", "uncollectible"): "uncollectible",
    ("paid", "finalize"): None,
    ("paid", "paid"): None,
    ("paid", "void"): None,
    ("paid", "uncollectible"): None,
    ("void", "finalize"): None,
    ("void", "paid"): None,
    ("void", "void"): None,
    ("void", "uncollectible"): None,
    ("uncollectible", "finalize"): None,
    ("uncollectible", "paid"): "paid",
    ("uncollectible", "void"): "void",
    ("uncollectible", "uncollectible"): None,
}


def snapshot(db: Session) -> dict[str, list[tuple[object, ...]]]:
    """Everything a domain call could have written, to prove a refused call wrote nothing."""
    db.flush()
    out = {}
    for table in (
        "invoices",
        "invoice_items",
        "invoice_sync",
        "invoice_monthly_rollups",
        "invoice_number_sequences",
    ):
        out[table] = [tuple(r) for r in db.execute(sa.text(f"SELECT * FROM {table} ORDER BY 1, 2"))]
    return out


@pytest.mark.parametrize(("start", "action"), list(TRANSITIONS))
def test_transition(db: Session, start: str, action: str) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status=start)
    expected = TRANSITIONS[(start, action)]
    if expected is None:
        before = snapshot(db)
        with pytest.raises(InvalidTransition) as err:
            ACTIONS[action](db, inv)
        assert err.value.code == "INVALID_TRANSITION"
        assert snapshot(db) == before
    else:
        after = ACTIONS[action](db, inv)
        assert after.status == expected
        db.expire_all()
        assert db.get_one(tables.Invoice, inv.id).status == expected


def test_finalize_writes_outbox_and_rollup_in_the_same_transaction(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open", lines=2)
    row = outbox.get(db, inv.id)
    assert row is not None and row.state == "pending" and row.next_attempt_at == NOW
    assert inv.finalized_at == NOW and inv.due_date == date(2026, 3, 19)
    summary = rollup.monthly_summary(db, scope_id=org.id, years=[2026])
    feb = next(m for m in summary if m.month == 2)
    assert (feb.invoice_count, feb.total_cents) == (1, 750)


def test_void_subtracts_from_the_rollup_and_makes_sync_due(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open")
    revision = outbox.get(db, inv.id).revision  # type: ignore[union-attr]
    lifecycle.void(db, inv, now=NOW, rollup_shards=SHARDS)
    assert all(
        m.invoice_count == 0 for m in rollup.monthly_summary(db, scope_id=org.id, years=[2026])
    )
    assert outbox.get(db, inv.id).revision == revision + 1  # type: ignore[union-attr]
    assert rollup.verify(db) == []


def test_empty_invoice_cannot_be_finalized(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, lines=0)
    with pytest.raises(EmptyInvoice):
        lifecycle.finalize(db, inv, now=NOW, rollup_shards=SHARDS)


def test_lines_cannot_be_added_to_a_finalized_invoice(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open")
    before = snapshot(db)
    with pytest.raises(InvoiceNotDraft):
        lifecycle.add_lines(db, inv, [usage_line()], now=NOW)
    assert snapshot(db) == before


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE invoice_items SET quantity = quantity + 1",
        "UPDATE invoice_items SET amount_cents = 1",
        "DELETE FROM invoice_items",
        "UPDATE invoices SET total_cents = 1, subtotal_cents = 1",
        "UPDATE invoices SET currency = 'EUR'",
        "UPDATE invoices SET status = 'draft'",
        "DELETE FROM invoices",
        "INSERT INTO invoice_items (public_id, invoice_id, kind, description, product, unit,"
        " quantity, unit_price, amount_cents) SELECT 'li_x', id, 'usage', 'x', 'x', 'x', 1, 1, 1"
        " FROM invoices",
    ],
)
def test_database_refuses_to_change_a_finalized_invoice(db: Session, statement: str) -> None:
    org = make_org(db)
    make_invoice(db, org, status="open")
    db.flush()
    with (
        pytest.raises(DBAPIError, match=r"immutable|cannot be deleted|not a lifecycle"),
        db.begin_nested(),
    ):
        db.execute(sa.text(statement))


def test_database_allows_recording_stripe_ids_on_finalized_invoices(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open")
    db.flush()
    db.execute(
        sa.text("UPDATE invoice_items SET stripe_line_id = 'il_1' WHERE invoice_id = :i"),
        {"i": inv.id},
    )
    db.execute(
        sa.text("UPDATE invoices SET stripe_invoice_id = 'in_1' WHERE id = :i"), {"i": inv.id}
    )
    db.expire_all()
    row = db.get_one(tables.Invoice, inv.id)
    assert row.stripe_invoice_id == "in_1"
    assert (row.status, row.number, row.total_cents) == ("open", inv.number, inv.total_cents)
    lines = db.exec(select(tables.InvoiceItem).where(tables.InvoiceItem.invoice_id == inv.id)).all()
    assert len(lines) == 3 and {li.stripe_line_id for li in lines} == {"il_1"}
    assert sum(li.amount_cents for li in lines) == row.total_cents


def test_drafts_stay_editable_in_the_database(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org)
    db.flush()
    db.execute(
        sa.text("UPDATE invoice_items SET description = 'fixed' WHERE invoice_id = :i"),
        {"i": inv.id},
    )
    db.expire_all()
    lines = db.exec(select(tables.InvoiceItem).where(tables.InvoiceItem.invoice_id == inv.id)).all()
    assert len(lines) == 3 and {li.description for li in lines} == {"fixed"}


def line(**overrides: object) -> LineInput:
    base: dict[str, object] = dict(
        kind=LineItemKind.USAGE,
        description="CPU",
        product="machines-shared-cpu",
        unit="second",
        quantity=Decimal("10"),
        unit_price=Decimal("0.0000268"),
    )
    base.update(overrides)
    return LineInput(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("bad", "error", "field"),
    [
        (line(quantity=Decimal("-1")), NegativeQuantity, ("items", "1", "quantity")),
        (line(unit_price="0.0000000000001"), TooManyDecimals, ("items", "1", "unitPrice")),
        (line(quantity="1.0000000001"), TooManyDecimals, ("items", "1", "quantity")),
        (line(unit_price="-5"), NegativePrice, ("items", "1", "unitPrice")),
        (line(kind=LineItemKind.CREDIT, unit_price="5"), InvalidValue, ("items", "1", "unitPrice")),
        (line(quantity="lots"), InvalidValue, ("items", "1", "quantity")),
        (line(description="  "), InvalidValue, ("items", "1", "description")),
        (
            line(period_start=date(2026, 2, 10), period_end=date(2026, 2, 1)),
            InvalidPeriod,
            ("items", "1", "periodEnd"),
        ),
    ],
)
def test_a_bad_line_rejects_the_whole_call(
    db: Session, bad: LineInput, error: type[DomainError], field: tuple[str, ...]
) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, lines=1)
    before = snapshot(db)
    with pytest.raises(error) as err:
        lifecycle.add_lines(db, inv, [line(), bad, line()], now=NOW)
    assert err.value.field == field
    assert snapshot(db) == before


def test_credit_lines_are_negative_and_count_in_the_total(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, lines=1)  # 250
    lifecycle.add_lines(
        db, inv, [line(kind=LineItemKind.CREDIT, quantity="1", unit_price="-100")], now=NOW
    )
    inv = lifecycle.finalize(db, inv, now=NOW, rollup_shards=SHARDS)
    assert inv.subtotal_cents == inv.total_cents == 150


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"currency": "usx"}, UnknownCurrency),
        ({"period_start": date(2026, 2, 1), "period_end": date(2026, 2, 1)}, InvalidPeriod),
        ({"period_start": date(2026, 2, 1), "period_end": date(2026, 1, 1)}, InvalidPeriod),
        ({"due_date": date(2025, 1, 1)}, InvalidPeriod),
    ],
)
def test_bad_drafts_are_refused(
    db: Session, kwargs: dict[str, object], error: type[DomainError]
) -> None:
    org = make_org(db)
    args: dict[str, object] = {
        "currency": "usd",
        "period_start": date(2026, 2, 1),
        "period_end": date(2026, 3, 1),
    }
    args.update(kwargs)
    before = snapshot(db)
    with pytest.raises(error):
        lifecycle.create_draft(db, org, now=NOW, **args)  # type: ignore[arg-type]
    assert snapshot(db) == before


def test_currency_is_stored_upper_case(db: Session) -> None:
    org = make_org(db)
    inv = lifecycle.create_draft(
        db, org, currency="eur", period_start=date(2026, 1, 1), period_end=date(2026, 2, 1), now=NOW
    )
    assert inv.currency == "EUR"
