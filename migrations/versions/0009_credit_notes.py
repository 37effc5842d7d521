"""Credit notes (issue 21): corrections of finalized invoices as their own immutable documents.

- `credit_notes`: one per correction of one invoice, numbered `<invoice number>-CN<n>` (n counts
  the invoice's credit notes under the invoice's row lock, so numbers are gap-free and a
  rolled-back issue gives its number back). Status `issued` -> `void`, never back. A credit
  note on an invoice that was PAID when it was issued (`post_payment`) says how its total is
  settled, as Stripe requires: refund + customer balance + out of band = total (a CHECK).
- `credit_note_lines`: an amount (and optionally a quantity) against one invoice line, or a
  custom amount with a description. Amounts are positive minor units.
- `outage_incidents`: one row per outage credit run, keyed by its own idempotency key, so the
  same incident run twice credits once.
- `invoice_monthly_rollups.credited_cents`: credits counted in the month of the invoice's
  period, kept in the same transaction as the credit note.

Guards (by hand, as for invoices):
- `credit_notes_guard`: no DELETE; an UPDATE may only void (issued -> void with voided_at) and
  record Stripe's id and Stripe's void once each. Everything else is immutable from insert.
- `credit_notes_insert_guard`: a credit note is issued on a finalized, not void invoice of the
  same organization and currency, as `issued`, with no Stripe state yet.
- `credit_note_lines_guard`: lines are never updated or deleted.
- `credit_note_lines_limit`: after each line insert, with the invoice row locked (so concurrent
  issuers queue), the issued credit notes' lines never exceed a line's amount or quantity, and
  never the invoice's total. Void credit notes are not counted: voiding gives the amount back.
- `credit_notes_balanced` (deferred to commit): a credit note's lines sum to its total, so no
  line can be added to a credit note after the transaction that issued it.
- `invoices_credit_notes_guard`: an invoice with issued credit notes cannot be voided (void the
  credit notes first), so a void never leaves credits pointing at nothing.

Revision ID: 0009
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0009"
down_revision: str | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

REASONS = ("duplicate", "fraudulent", "order_change", "product_unsatisfactory")

GUARDS = """
CREATE FUNCTION credit_notes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        RAISE EXCEPTION 'credit note % is issued and cannot be deleted (void it)', OLD.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (to_jsonb(NEW) - 'status' - 'voided_at' - 'stripe_credit_note_id' - 'stripe_voided_at')
       IS DISTINCT FROM
       (to_jsonb(OLD) - 'status' - 'voided_at' - 'stripe_credit_note_id' - 'stripe_voided_at') THEN
        RAISE EXCEPTION 'credit note % is issued and immutable', OLD.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (NEW.status IS DISTINCT FROM OLD.status OR NEW.voided_at IS DISTINCT FROM OLD.voided_at)
       AND NOT (OLD.status = 'issued' AND NEW.status = 'void' AND OLD.voided_at IS NULL) THEN
        RAISE EXCEPTION 'credit note %: % -> % is not a lifecycle transition',
            OLD.number, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF (OLD.stripe_credit_note_id IS NOT NULL
            AND NEW.stripe_credit_note_id IS DISTINCT FROM OLD.stripe_credit_note_id)
       OR (OLD.stripe_voided_at IS NOT NULL
            AND NEW.stripe_voided_at IS DISTINCT FROM OLD.stripe_voided_at) THEN
        RAISE EXCEPTION 'credit note %: Stripe''s id and void are recorded once', OLD.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER credit_notes_guard BEFORE UPDATE OR DELETE ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION credit_notes_guard();

CREATE FUNCTION credit_notes_insert_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    inv record;
BEGIN
    SELECT status, organization_id, currency INTO inv FROM invoices WHERE id = NEW.invoice_id;
    IF inv.status IS NULL OR inv.status NOT IN ('open', 'paid', 'uncollectible') THEN
        RAISE EXCEPTION 'credit note %: invoice is %; only finalized, not void invoices can be credited',
            NEW.number, coalesce(inv.status, 'missing')
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF inv.organization_id <> NEW.organization_id OR inv.currency <> NEW.currency THEN
        RAISE EXCEPTION 'credit note %: organization and currency are the invoice''s', NEW.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF NEW.status <> 'issued' OR NEW.stripe_credit_note_id IS NOT NULL
       OR NEW.stripe_voided_at IS NOT NULL THEN
        RAISE EXCEPTION 'credit note %: a new credit note is issued, with no Stripe state yet', NEW.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

CREATE TRIGGER credit_notes_insert_guard BEFORE INSERT ON credit_notes
    FOR EACH ROW EXECUTE FUNCTION credit_notes_insert_guard();

CREATE FUNCTION credit_note_lines_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'credit note lines are immutable'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER credit_note_lines_guard BEFORE UPDATE OR DELETE ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION credit_note_lines_guard();

CREATE FUNCTION credit_note_lines_limit() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    note record;
    item record;
    credited bigint;
    credited_qty numeric;
    invoice_total bigint;
BEGIN
    SELECT invoice_id, status, number INTO note FROM credit_notes WHERE id = NEW.credit_note_id;
    IF note.status <> 'issued' THEN
        RAISE EXCEPTION 'credit note % is void: no lines can be added', note.number
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- Concurrent issuers of one invoice queue here; the sums below then see each other's rows.
    SELECT total_cents INTO invoice_total FROM invoices WHERE id = note.invoice_id FOR UPDATE;
    IF NEW.invoice_item_id IS NOT NULL THEN
        SELECT invoice_id, amount_cents, quantity, public_id INTO item
            FROM invoice_items WHERE id = NEW.invoice_item_id;
        IF item.invoice_id IS DISTINCT FROM note.invoice_id THEN
            RAISE EXCEPTION 'credit note %: line item is not on the credited invoice', note.number
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        SELECT coalesce(sum(l.amount_cents), 0), coalesce(sum(l.quantity), 0)
            INTO credited, credited_qty
            FROM credit_note_lines l JOIN credit_notes c ON c.id = l.credit_note_id
            WHERE l.invoice_item_id = NEW.invoice_item_id AND c.status = 'issued';
        IF credited > item.amount_cents OR credited_qty > item.quantity THEN
            RAISE EXCEPTION 'credit note %: line item % would be credited % of its % (quantity % of %)',
                note.number, item.public_id, credited, item.amount_cents, credited_qty, item.quantity
                USING ERRCODE = 'check_violation';
        END IF;
    END IF;
    SELECT coalesce(sum(l.amount_cents), 0) INTO credited
        FROM credit_note_lines l JOIN credit_notes c ON c.id = l.credit_note_id
        WHERE c.invoice_id = note.invoice_id AND c.status = 'issued';
    IF credited > invoice_total THEN
        RAISE EXCEPTION 'credit note %: the invoice would be credited % of its total %',
            note.number, credited, invoice_total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER credit_note_lines_limit AFTER INSERT ON credit_note_lines
    FOR EACH ROW EXECUTE FUNCTION credit_note_lines_limit();

CREATE FUNCTION credit_notes_balanced() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    -- TG_ARGV[0] names the column holding the credit note's id (id or credit_note_id).
    note_id bigint := (to_jsonb(NEW) ->> TG_ARGV[0])::bigint;
    total bigint;
    lines bigint;
BEGIN
    SELECT total_cents INTO total FROM credit_notes WHERE id = note_id;
    SELECT coalesce(sum(amount_cents), 0) INTO lines FROM credit_note_lines
        WHERE credit_note_id = note_id;
    IF total IS DISTINCT FROM lines THEN
        RAISE EXCEPTION 'credit note %: lines sum to %, the total is % (lines are written once, with the credit note)',
            note_id, lines, total
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE CONSTRAINT TRIGGER credit_notes_balanced AFTER INSERT ON credit_notes
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION credit_notes_balanced('id');
CREATE CONSTRAINT TRIGGER credit_note_lines_balanced AFTER INSERT ON credit_note_lines
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION credit_notes_balanced('credit_note_id');

CREATE FUNCTION invoices_credit_notes_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM credit_notes WHERE invoice_id = NEW.id AND status = 'issued') THEN
        RAISE EXCEPTION 'invoice % has issued credit notes: void them before the invoice', NEW.public_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NEW;
END;
$$;

-- Credit notes are financial records like finalized invoices: the same TRUNCATE refusal (0003).
CREATE TRIGGER credit_notes_truncate_refused BEFORE TRUNCATE ON credit_notes
    FOR EACH STATEMENT EXECUTE FUNCTION finalized_truncate_guard();
CREATE TRIGGER credit_note_lines_truncate_refused BEFORE TRUNCATE ON credit_note_lines
    FOR EACH STATEMENT EXECUTE FUNCTION finalized_truncate_guard();

CREATE TRIGGER invoices_credit_notes_guard BEFORE UPDATE OF status ON invoices
    FOR EACH ROW WHEN (NEW.status = 'void' AND OLD.status <> 'void')
    EXECUTE FUNCTION invoices_credit_notes_guard();
"""


def upgrade() -> None:
    op.create_table(
        "outage_incidents",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("key", sa.Text, nullable=False, unique=True),
        sa.Column("region", sa.Text, nullable=False),
        sa.Column("window_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("window_to", sa.DateTime(timezone=True), nullable=False),
        sa.Column("products", sa.Text, nullable=True),
        sa.Column("percent", sa.Integer, nullable=False),
        sa.Column("credit_notes", sa.Integer, nullable=False, server_default="0"),
        sa.Column("draft_lines", sa.Integer, nullable=False, server_default="0"),
        sa.Column("credited_cents", sa.BigInteger, nullable=False, server_default="0"),
        # Per organization and currency: what was credited (the run's report, kept).
        sa.Column("summary", JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("window_from < window_to", name="window"),
        sa.CheckConstraint("percent BETWEEN 1 AND 100", name="percent"),
    )
    op.create_table(
        "credit_notes",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("public_id", sa.Text, nullable=False, unique=True),
        sa.Column(
            "organization_id", sa.BigInteger, sa.ForeignKey("organizations.id"), nullable=False
        ),
        sa.Column(
            "invoice_id", sa.BigInteger, sa.ForeignKey("invoices.id"), nullable=False, index=True
        ),
        sa.Column("number", sa.Text, nullable=False, unique=True),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("memo", sa.Text, nullable=True),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("total_cents", sa.BigInteger, nullable=False),
        sa.Column("post_payment", sa.Boolean, nullable=False),
        sa.Column("refund_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("credit_balance_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("out_of_band_cents", sa.BigInteger, nullable=False, server_default="0"),
        sa.Column("created_by", sa.Text, nullable=False),
        sa.Column("issued_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "incident_id", sa.BigInteger, sa.ForeignKey("outage_incidents.id"), nullable=True
        ),
        sa.Column("stripe_credit_note_id", sa.Text, nullable=True, unique=True),
        sa.Column("stripe_voided_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.CheckConstraint("status IN ('issued', 'void')", name="status"),
        sa.CheckConstraint(f"reason IN {REASONS!r}", name="reason"),
        sa.CheckConstraint("total_cents > 0", name="total_positive"),
        sa.CheckConstraint(
            "refund_cents >= 0 AND credit_balance_cents >= 0 AND out_of_band_cents >= 0",
            name="settlement_non_negative",
        ),
        # Stripe's rule: a credit note on a paid invoice says where all of its money goes; one
        # on an unpaid invoice lowers the amount due and settles nothing.
        sa.CheckConstraint(
            "CASE WHEN post_payment"
            " THEN refund_cents + credit_balance_cents + out_of_band_cents = total_cents"
            " ELSE refund_cents = 0 AND credit_balance_cents = 0 AND out_of_band_cents = 0 END",
            name="settlement",
        ),
        sa.CheckConstraint("(status = 'void') = (voided_at IS NOT NULL)", name="voided_at"),
    )
    op.create_index("ix_credit_notes_organization_id_id", "credit_notes", ["organization_id", "id"])
    op.create_table(
        "credit_note_lines",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "credit_note_id",
            sa.BigInteger,
            sa.ForeignKey("credit_notes.id"),
            nullable=False,
            index=True,
        ),
        sa.Column(
            "invoice_item_id",
            sa.BigInteger,
            sa.ForeignKey("invoice_items.id"),
            nullable=True,
            index=True,
        ),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("quantity", sa.Numeric(20, 9), nullable=True),
        sa.Column("amount_cents", sa.BigInteger, nullable=False),
        sa.CheckConstraint("amount_cents > 0", name="amount_positive"),
        sa.CheckConstraint("quantity IS NULL OR quantity > 0", name="quantity_positive"),
        sa.CheckConstraint(
            "invoice_item_id IS NOT NULL OR quantity IS NULL", name="custom_has_no_quantity"
        ),
    )
    op.add_column(
        "invoice_monthly_rollups",
        sa.Column("credited_cents", sa.BigInteger, nullable=False, server_default="0"),
    )
    op.execute(GUARDS)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS invoices_credit_notes_guard ON invoices")
    op.execute("DROP FUNCTION IF EXISTS invoices_credit_notes_guard()")
    op.drop_column("invoice_monthly_rollups", "credited_cents")
    op.drop_table("credit_note_lines")
    op.drop_table("credit_notes")
    op.drop_table("outage_incidents")
    for fn in (
        "credit_notes_guard",
        "credit_notes_insert_guard",
        "credit_note_lines_guard",
        "credit_note_lines_limit",
        "credit_notes_balanced",
    ):
        op.execute(f"DROP FUNCTION IF EXISTS {fn}()")
