"""The database's own guards around finalized invoices, tried through raw SQL (the holes of
issue 14): moving a line off a finalized invoice, TRUNCATE, rewriting Stripe ids, `paid_at` and
`created_at`. Each statement runs in a savepoint of the rolled-back test transaction."""

from __future__ import annotations

from collections.abc import Mapping

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session

from models import tables
from tests.conftest import ALL_TABLES
from tests.factories import make_invoice, make_org

# "referenced in a foreign key": since credit notes (0009) point at invoice lines, PostgreSQL
# refuses a bare TRUNCATE of invoice_items for that before the guard trigger runs.
REFUSED = (
    r"immutable|cannot be truncated|only with the transition"
    r"|cannot truncate a table referenced in a foreign key"
)


def refused(db: Session, statement: str, params: Mapping[str, object] | None = None) -> None:
    with pytest.raises(DBAPIError, match=REFUSED), db.begin_nested():
        db.execute(sa.text(statement), dict(params or {}))


def allowed(db: Session, statement: str, params: Mapping[str, object] | None = None) -> None:
    with db.begin_nested():
        db.execute(sa.text(statement), dict(params or {}))


def finalized_and_draft(db: Session) -> tuple[tables.Invoice, tables.Invoice]:
    org = make_org(db)
    done = make_invoice(db, org, status="open")
    draft = make_invoice(db, org)
    db.flush()
    return done, draft


# Lines moving between invoices ----------------------------------------------------------------


def test_a_line_cannot_move_off_a_finalized_invoice(db: Session) -> None:
    done, draft = finalized_and_draft(db)
    refused(
        db,
        "UPDATE invoice_items SET invoice_id = :draft WHERE invoice_id = :done",
        {"draft": draft.id, "done": done.id},
    )
    count = db.execute(
        sa.text("SELECT count(*) FROM invoice_items WHERE invoice_id = :i"), {"i": done.id}
    ).scalar_one()
    assert count == done.line_item_count == 3


def test_a_line_cannot_move_onto_a_finalized_invoice(db: Session) -> None:
    done, draft = finalized_and_draft(db)
    refused(
        db,
        "UPDATE invoice_items SET invoice_id = :done WHERE invoice_id = :draft",
        {"draft": draft.id, "done": done.id},
    )


def test_a_line_may_move_between_drafts(db: Session) -> None:
    org = make_org(db)
    a, b = make_invoice(db, org), make_invoice(db, org)
    db.flush()
    allowed(
        db,
        "UPDATE invoice_items SET invoice_id = :b WHERE invoice_id = :a",
        {"a": a.id, "b": b.id},
    )


# TRUNCATE --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "statement",
    # The last one is the suite's own cleanup without its opt-in.
    ["TRUNCATE invoice_items", "TRUNCATE invoices CASCADE", f"TRUNCATE {ALL_TABLES} CASCADE"],
)
def test_truncate_is_refused_while_a_finalized_invoice_exists(db: Session, statement: str) -> None:
    finalized_and_draft(db)
    refused(db, statement)
    assert db.execute(sa.text("SELECT count(*) FROM invoice_items")).scalar_one() == 6


def test_truncate_of_drafts_only_is_allowed(db: Session) -> None:
    make_invoice(db, make_org(db))
    db.flush()
    allowed(db, "TRUNCATE invoices CASCADE")
    assert db.execute(sa.text("SELECT count(*) FROM invoices")).scalar_one() == 0


def test_truncate_is_allowed_to_the_cleanup_that_says_so(db: Session) -> None:
    """The escape hatch the test suite's `truncate_all` (and an operator's reset) uses: a
    transaction-local setting, so it cannot leak into a pooled connection's next transaction."""
    finalized_and_draft(db)
    with db.begin_nested():
        db.execute(sa.text("SET LOCAL billing.allow_truncate = 'on'"))
        db.execute(sa.text("TRUNCATE invoice_items, invoices CASCADE"))
    assert db.execute(sa.text("SELECT count(*) FROM invoices")).scalar_one() == 0


def test_the_truncate_setting_does_not_outlive_its_transaction(engine: sa.Engine) -> None:
    with engine.connect() as conn:
        with conn.begin():
            conn.execute(sa.text("SET LOCAL billing.allow_truncate = 'on'"))
        value = conn.execute(sa.text("SELECT current_setting('billing.allow_truncate', true)"))
        assert value.scalar_one() in (None, "")


# Stripe ids: set once by the sync, never rewritten -------------------------------------------


def test_stripe_invoice_id_is_set_once(db: Session) -> None:
    done, _ = finalized_and_draft(db)
    params = {"i": done.id}
    allowed(db, "UPDATE invoices SET stripe_invoice_id = 'in_first' WHERE id = :i", params)
    # The sync's own conditional write stays a harmless no-op.
    allowed(
        db,
        "UPDATE invoices SET stripe_invoice_id = coalesce(stripe_invoice_id, 'in_x') WHERE id = :i",
        params,
    )
    refused(db, "UPDATE invoices SET stripe_invoice_id = 'in_other' WHERE id = :i", params)
    refused(db, "UPDATE invoices SET stripe_invoice_id = NULL WHERE id = :i", params)


def test_stripe_line_id_is_set_once(db: Session) -> None:
    done, _ = finalized_and_draft(db)
    params = {"i": done.id}
    allowed(
        db, "UPDATE invoice_items SET stripe_line_id = 'il_first' WHERE invoice_id = :i", params
    )
    allowed(
        db, "UPDATE invoice_items SET stripe_line_id = 'il_first' WHERE invoice_id = :i", params
    )
    refused(
        db, "UPDATE invoice_items SET stripe_line_id = 'il_other' WHERE invoice_id = :i", params
    )
    refused(db, "UPDATE invoice_items SET stripe_line_id = NULL WHERE invoice_id = :i", params)


# Lifecycle timestamps ----------------------------------------------------------------------------


def test_paid_at_is_written_only_by_the_transition_to_paid(db: Session) -> None:
    org = make_org(db)
    open_ = make_invoice(db, org, status="open")
    paid = make_invoice(db, org, status="paid")
    db.flush()
    refused(db, "UPDATE invoices SET paid_at = now() WHERE id = :i", {"i": open_.id})
    refused(
        db, "UPDATE invoices SET paid_at = paid_at - interval '1 day' WHERE id = :i", {"i": paid.id}
    )
    allowed(
        db, "UPDATE invoices SET status = 'paid', paid_at = now() WHERE id = :i", {"i": open_.id}
    )


@pytest.mark.parametrize(
    ("status", "column"),
    [("open", "voided_at"), ("open", "marked_uncollectible_at"), ("void", "voided_at")],
)
def test_other_lifecycle_stamps_move_only_with_their_transition(
    db: Session, status: str, column: str
) -> None:
    inv = make_invoice(db, make_org(db), status=status)
    db.flush()
    refused(
        db, f"UPDATE invoices SET {column} = now() - interval '1 day' WHERE id = :i", {"i": inv.id}
    )


@pytest.mark.parametrize("status", ["draft", "open", "paid"])
def test_created_at_is_never_rewritten(db: Session, status: str) -> None:
    inv = make_invoice(db, make_org(db), status=status)
    db.flush()
    params = {"i": inv.id}
    refused(
        db, "UPDATE invoices SET created_at = created_at - interval '1 day' WHERE id = :i", params
    )
    refused(
        db,
        "UPDATE invoice_items SET created_at = created_at - interval '1 day' WHERE invoice_id = :i",
        params,
    )
