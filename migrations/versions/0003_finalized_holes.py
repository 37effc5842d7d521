"""Close the holes around finalized invoices that 0001's row triggers left open (issue 14).

- A line could be moved off a finalized invoice (`UPDATE invoice_items SET invoice_id = <draft>`):
  the line guard looked only at the new parent. It now refuses when the old or the new parent
  is finalized.
- `TRUNCATE` fires no row trigger. A statement-level `BEFORE TRUNCATE` trigger on `invoices` and
  `invoice_items` refuses while any finalized invoice exists, unless the transaction says
  `SET LOCAL billing.allow_truncate = 'on'` (the test suite's cleanup and a deliberate operator
  reset). This guards against accidents, not against the database owner, who can always drop a
  trigger.
- Stripe ids (`invoices.stripe_invoice_id`, `invoice_items.stripe_line_id`) may go from NULL to a
  value once, which is what the sync does, and are never rewritten. They are cleared (never
  rewritten to another id) only by an operator's deliberate recreate of an invoice voided on
  Stripe, in a transaction that first runs `SET LOCAL billing.recreate_remote = 'on'`.
- `paid_at`, `voided_at` and `marked_uncollectible_at` change only together with the transition
  they record; `created_at` never changes.

Written by hand: the functions are replaced in place (CREATE OR REPLACE), and the downgrade puts
0001's bodies back verbatim.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INVOICES_GUARD = """
CREATE OR REPLACE FUNCTION invoices_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is finalized and cannot be deleted', OLD.public_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'invoice %: created_at is immutable', OLD.public_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- Set once by the sync (NULL -> id); another id would mean two Stripe invoices for one.
    -- The one exception: an operator's deliberate recreate (models/sync_state/recreate.py) forgets a
    -- Stripe invoice that was voided or deleted on Stripe, in a transaction that says so.
    IF OLD.stripe_invoice_id IS NOT NULL
       AND NEW.stripe_invoice_id IS DISTINCT FROM OLD.stripe_invoice_id
       AND NOT (NEW.stripe_invoice_id IS NULL
                AND coalesce(current_setting('billing.recreate_remote', true), '') = 'on') THEN
        RAISE EXCEPTION 'invoice %: stripe_invoice_id % is immutable once set',
            OLD.public_id, OLD.stripe_invoice_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    -- Each lifecycle stamp records its transition, so it moves only with that transition.
    IF (NEW.paid_at IS DISTINCT FROM OLD.paid_at
            AND NOT (NEW.status = 'paid' AND OLD.status <> 'paid'))
       OR (NEW.voided_at IS DISTINCT FROM OLD.voided_at
            AND NOT (NEW.status = 'void' AND OLD.status <> 'void'))
       OR (NEW.marked_uncollectible_at IS DISTINCT FROM OLD.marked_uncollectible_at
            AND NOT (NEW.status = 'uncollectible' AND OLD.status <> 'uncollectible')) THEN
        RAISE EXCEPTION 'invoice %: paid_at, voided_at and marked_uncollectible_at change only with the transition they record',
            OLD.public_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF OLD.status <> 'draft' THEN
        IF NEW.currency IS DISTINCT FROM OLD.currency
           OR NEW.subtotal_cents IS DISTINCT FROM OLD.subtotal_cents
           OR NEW.total_cents IS DISTINCT FROM OLD.total_cents
           OR NEW.line_item_count IS DISTINCT FROM OLD.line_item_count
           OR NEW.organization_id IS DISTINCT FROM OLD.organization_id
           OR NEW.public_id IS DISTINCT FROM OLD.public_id
           OR NEW.number IS DISTINCT FROM OLD.number
           OR NEW.period_start IS DISTINCT FROM OLD.period_start
           OR NEW.period_end IS DISTINCT FROM OLD.period_end
           OR NEW.due_date IS DISTINCT FROM OLD.due_date
           OR NEW.finalized_at IS DISTINCT FROM OLD.finalized_at THEN
            RAISE EXCEPTION 'invoice % is finalized: its amounts, currency, number and period are immutable', OLD.public_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'draft' AND NEW.status = 'open')
        OR (OLD.status = 'open' AND NEW.status IN ('paid', 'void', 'uncollectible'))
        OR (OLD.status = 'uncollectible' AND NEW.status IN ('paid', 'void'))
    ) THEN
        RAISE EXCEPTION 'invoice %: % -> % is not a lifecycle transition', OLD.public_id, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
"""

INVOICE_ITEMS_GUARD = """
CREATE OR REPLACE FUNCTION invoice_items_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    old_status text;
    new_status text;
BEGIN
    -- Both parents matter: an UPDATE of invoice_id takes a line off one invoice and puts it on
    -- another. A missing parent (NULL) is a draft being deleted with its lines, or a foreign key
    -- violation about to be raised.
    IF TG_OP <> 'INSERT' THEN
        SELECT status INTO old_status FROM invoices WHERE id = OLD.invoice_id;
    END IF;
    IF TG_OP <> 'DELETE' THEN
        SELECT status INTO new_status FROM invoices WHERE id = NEW.invoice_id;
    END IF;
    IF TG_OP = 'UPDATE' AND NEW.created_at IS DISTINCT FROM OLD.created_at THEN
        RAISE EXCEPTION 'line item %: created_at is immutable', OLD.public_id
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    IF coalesce(old_status, 'draft') = 'draft' AND coalesce(new_status, 'draft') = 'draft' THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    -- The sync records Stripe's line id on a finalized invoice, once; nothing else may change.
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'stripe_line_id') = (to_jsonb(OLD) - 'stripe_line_id')
       AND (OLD.stripe_line_id IS NULL
            OR NEW.stripe_line_id IS NOT DISTINCT FROM OLD.stripe_line_id
            OR (NEW.stripe_line_id IS NULL
                AND coalesce(current_setting('billing.recreate_remote', true), '') = 'on')) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'invoice is % and its line items are immutable',
        CASE WHEN coalesce(old_status, 'draft') <> 'draft' THEN old_status ELSE new_status END
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
"""

TRUNCATE_GUARD = """
CREATE FUNCTION finalized_truncate_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF coalesce(current_setting('billing.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    IF EXISTS (SELECT 1 FROM invoices WHERE status <> 'draft') THEN
        RAISE EXCEPTION '% cannot be truncated while finalized invoices exist (a deliberate reset says SET LOCAL billing.allow_truncate = ''on'' first)',
            TG_TABLE_NAME
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN NULL;
END;
$$;

CREATE TRIGGER invoices_truncate_guard BEFORE TRUNCATE ON invoices
    FOR EACH STATEMENT EXECUTE FUNCTION finalized_truncate_guard();
CREATE TRIGGER invoice_items_truncate_guard BEFORE TRUNCATE ON invoice_items
    FOR EACH STATEMENT EXECUTE FUNCTION finalized_truncate_guard();
"""

# 0001's bodies, verbatim, for the downgrade.
OLD_INVOICES_GUARD = """
CREATE OR REPLACE FUNCTION invoices_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        IF OLD.status <> 'draft' THEN
            RAISE EXCEPTION 'invoice % is finalized and cannot be deleted', OLD.public_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
        RETURN OLD;
    END IF;
    IF OLD.status <> 'draft' THEN
        IF NEW.currency IS DISTINCT FROM OLD.currency
           OR NEW.subtotal_cents IS DISTINCT FROM OLD.subtotal_cents
           OR NEW.total_cents IS DISTINCT FROM OLD.total_cents
           OR NEW.line_item_count IS DISTINCT FROM OLD.line_item_count
           OR NEW.organization_id IS DISTINCT FROM OLD.organization_id
           OR NEW.public_id IS DISTINCT FROM OLD.public_id
           OR NEW.number IS DISTINCT FROM OLD.number
           OR NEW.period_start IS DISTINCT FROM OLD.period_start
           OR NEW.period_end IS DISTINCT FROM OLD.period_end
           OR NEW.due_date IS DISTINCT FROM OLD.due_date
           OR NEW.finalized_at IS DISTINCT FROM OLD.finalized_at THEN
            RAISE EXCEPTION 'invoice % is finalized: its amounts, currency, number and period are immutable', OLD.public_id
                USING ERRCODE = 'integrity_constraint_violation';
        END IF;
    END IF;
    IF NEW.status IS DISTINCT FROM OLD.status AND NOT (
           (OLD.status = 'draft' AND NEW.status = 'open')
        OR (OLD.status = 'open' AND NEW.status IN ('paid', 'void', 'uncollectible'))
        OR (OLD.status = 'uncollectible' AND NEW.status IN ('paid', 'void'))
    ) THEN
        RAISE EXCEPTION 'invoice %: % -> % is not a lifecycle transition', OLD.public_id, OLD.status, NEW.status
            USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    NEW.updated_at := now();
    RETURN NEW;
END;
$$;
"""

OLD_INVOICE_ITEMS_GUARD = """
CREATE OR REPLACE FUNCTION invoice_items_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    parent_status text;
BEGIN
    SELECT status INTO parent_status FROM invoices
        WHERE id = COALESCE(NEW.invoice_id, OLD.invoice_id);
    IF parent_status IS NULL OR parent_status = 'draft' THEN
        RETURN COALESCE(NEW, OLD);
    END IF;
    -- The sync records Stripe's line id on a finalized invoice; nothing else may change.
    IF TG_OP = 'UPDATE'
       AND (to_jsonb(NEW) - 'stripe_line_id') = (to_jsonb(OLD) - 'stripe_line_id') THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'invoice is % and its line items are immutable', parent_status
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
"""


def upgrade() -> None:
    op.execute(INVOICES_GUARD)
    op.execute(INVOICE_ITEMS_GUARD)
    op.execute(TRUNCATE_GUARD)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS invoice_items_truncate_guard ON invoice_items")
    op.execute("DROP TRIGGER IF EXISTS invoices_truncate_guard ON invoices")
    op.execute("DROP FUNCTION IF EXISTS finalized_truncate_guard()")
    op.execute(OLD_INVOICE_ITEMS_GUARD)
    op.execute(OLD_INVOICES_GUARD)
