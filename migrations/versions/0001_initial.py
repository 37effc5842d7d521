"""Initial schema: organizations, tokens, invoices, line items, sync outbox, attempts, rollups.

Written by hand: the CHECK constraints and the immutability triggers are the point of this
migration, and autogenerate sees neither. CHECK names are short: Alembic applies the models'
naming convention (`ck_<table>_<name>`) to them.

The rollup has no `invoice_count >= 0` CHECK on purpose: PostgreSQL checks constraints on the
proposed row of an INSERT ... ON CONFLICT before it looks for the conflict, so a void's negative
delta would be refused. `billing rollup verify` is the guard instead.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True)


def _ts(name: str, *, nullable: bool = True, now: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if now else None,
    )


def _cents(name: str, *, default: bool = True) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger, nullable=False, server_default="0" if default else None)


CURRENCY_CHECK = "{col} ~ '^[A-Z]{{3}}$'"

IMMUTABILITY_SQL = """
CREATE FUNCTION invoices_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER invoices_guard BEFORE UPDATE OR DELETE ON invoices
    FOR EACH ROW EXECUTE FUNCTION invoices_guard();

CREATE FUNCTION invoice_items_guard() RETURNS trigger LANGUAGE plpgsql AS $$
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

CREATE TRIGGER invoice_items_guard BEFORE INSERT OR UPDATE OR DELETE ON invoice_items
    FOR EACH ROW EXECUTE FUNCTION invoice_items_guard();
"""


def upgrade() -> None:
    op.create_table(
        "organizations",
        _id(),
        sa.Column("public_id", sa.Text, nullable=False),
        sa.Column("slug", sa.Text, nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("billing_email", sa.Text, nullable=False),
        sa.Column("invoice_prefix", sa.Text, nullable=False),
        sa.Column("default_currency", sa.CHAR(3), nullable=False),
        sa.Column("stripe_customer_id", sa.Text),
        _ts("created_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_organizations"),
        sa.UniqueConstraint("public_id", name="uq_organizations_public_id"),
        sa.UniqueConstraint("slug", name="uq_organizations_slug"),
        sa.UniqueConstraint("invoice_prefix", name="uq_organizations_invoice_prefix"),
        sa.CheckConstraint("slug ~ '^[a-z0-9][a-z0-9-]{1,62}$'", name="slug_format"),
        sa.CheckConstraint("invoice_prefix ~ '^[A-Z0-9]{2,12}$'", name="prefix_format"),
        sa.CheckConstraint(CURRENCY_CHECK.format(col="default_currency"), name="currency_iso"),
    )
    op.create_table(
        "api_tokens",
        _id(),
        sa.Column("token_sha256", sa.CHAR(64), nullable=False),
        sa.Column("scope", sa.Text, nullable=False),
        sa.Column("organization_id", sa.BigInteger),
        sa.Column("name", sa.Text, nullable=False),
        _ts("created_at", nullable=False, now=True),
        _ts("revoked_at"),
        sa.PrimaryKeyConstraint("id", name="pk_api_tokens"),
        sa.UniqueConstraint("token_sha256", name="uq_api_tokens_token_sha256"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_api_tokens_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("scope IN ('member', 'admin')", name="scope_known"),
        sa.CheckConstraint("scope = 'admin' OR organization_id IS NOT NULL", name="member_has_org"),
    )
    op.create_table(
        "invoice_number_sequences",
        sa.Column("organization_id", sa.BigInteger, nullable=False),
        sa.Column("last_number", sa.BigInteger, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("organization_id", name="pk_invoice_number_sequences"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_invoice_number_sequences_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )
    op.create_table(
        "invoices",
        _id(),
        sa.Column("public_id", sa.Text, nullable=False),
        sa.Column("organization_id", sa.BigInteger, nullable=False),
        sa.Column("number", sa.Text),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("period_end", sa.Date, nullable=False),
        sa.Column("due_date", sa.Date),
        _ts("finalized_at"),
        _ts("paid_at"),
        _ts("voided_at"),
        _ts("marked_uncollectible_at"),
        _cents("subtotal_cents"),
        _cents("total_cents"),
        sa.Column("line_item_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("stripe_invoice_id", sa.Text),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_invoices"),
        sa.UniqueConstraint("public_id", name="uq_invoices_public_id"),
        sa.UniqueConstraint("number", name="uq_invoices_number"),
        sa.UniqueConstraint("stripe_invoice_id", name="uq_invoices_stripe_invoice_id"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_invoices_organization_id_organizations",
        ),
        sa.CheckConstraint(
            "status IN ('draft', 'open', 'paid', 'void', 'uncollectible')",
            name="status_known",
        ),
        sa.CheckConstraint(CURRENCY_CHECK.format(col="currency"), name="currency_iso"),
        sa.CheckConstraint("period_start < period_end", name="period_order"),
        sa.CheckConstraint(
            "status = 'draft' OR (number IS NOT NULL AND finalized_at IS NOT NULL)",
            name="finalized_has_number",
        ),
        sa.CheckConstraint("status <> 'paid' OR paid_at IS NOT NULL", name="paid_has_time"),
        sa.CheckConstraint("status <> 'void' OR voided_at IS NOT NULL", name="void_has_time"),
        sa.CheckConstraint("total_cents = subtotal_cents", name="total_is_subtotal"),
        sa.CheckConstraint("line_item_count >= 0", name="line_count_non_negative"),
    )
    # Lists: an organization's invoices newest first, keyset on (period_start, id).
    op.create_index(
        "ix_invoices_organization_id_period_start_id",
        "invoices",
        ["organization_id", sa.text("period_start DESC"), sa.text("id DESC")],
    )
    # Admin lists over the whole platform, same keyset.
    op.create_index(
        "ix_invoices_period_start_id",
        "invoices",
        [sa.text("period_start DESC"), sa.text("id DESC")],
    )

    op.create_table(
        "invoice_items",
        _id(),
        sa.Column("public_id", sa.Text, nullable=False),
        sa.Column("invoice_id", sa.BigInteger, nullable=False),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("product", sa.Text, nullable=False),
        sa.Column("app", sa.Text),
        sa.Column("region", sa.Text),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("quantity", sa.Numeric(20, 9), nullable=False),
        sa.Column("unit_price", sa.Numeric(24, 12), nullable=False),
        _cents("amount_cents", default=False),
        sa.Column("period_start", sa.Date),
        sa.Column("period_end", sa.Date),
        sa.Column("metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("stripe_line_id", sa.Text),
        _ts("created_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("id", name="pk_invoice_items"),
        sa.UniqueConstraint("public_id", name="uq_invoice_items_public_id"),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name="fk_invoice_items_invoice_id_invoices",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "kind IN ('usage', 'subscription', 'one_off', 'credit', 'adjustment')",
            name="kind_known",
        ),
        sa.CheckConstraint("quantity >= 0", name="quantity_non_negative"),
        sa.CheckConstraint(
            "kind IN ('credit', 'adjustment') OR unit_price >= 0",
            name="charges_non_negative",
        ),
        sa.CheckConstraint("kind <> 'credit' OR unit_price <= 0", name="credit_non_positive"),
        sa.CheckConstraint(
            "period_start IS NULL OR period_end IS NULL OR period_start < period_end",
            name="period_order",
        ),
        sa.CheckConstraint("jsonb_typeof(metadata) = 'object'", name="metadata_object"),
    )
    # Line items of an invoice in insertion order (the id is monotonic), for pages and loaders.
    op.create_index("ix_invoice_items_invoice_id_id", "invoice_items", ["invoice_id", "id"])

    op.create_table(
        "invoice_sync",
        sa.Column("invoice_id", sa.BigInteger, nullable=False),
        sa.Column("state", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        _ts("next_attempt_at"),
        _ts("locked_until"),
        sa.Column("lease_owner", sa.Text),
        _ts("last_attempt_at"),
        _ts("synced_at"),
        sa.Column("revision", sa.Integer, nullable=False, server_default="0"),
        sa.Column("verify_requested", sa.Boolean, nullable=False, server_default=sa.false()),
        sa.Column("last_error_class", sa.Text),
        sa.Column("last_error_code", sa.Text),
        sa.Column("last_error_message", sa.Text),
        sa.Column("last_error_http_status", sa.Integer),
        sa.Column("last_error_request_id", sa.Text),
        _ts("created_at", nullable=False, now=True),
        _ts("updated_at", nullable=False, now=True),
        sa.PrimaryKeyConstraint("invoice_id", name="pk_invoice_sync"),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name="fk_invoice_sync_invoice_id_invoices",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "state IN ('pending', 'syncing', 'synced', 'retrying', 'failed')",
            name="state_known",
        ),
        sa.CheckConstraint(
            "state NOT IN ('pending', 'retrying') OR next_attempt_at IS NOT NULL",
            name="due_has_time",
        ),
    )
    # The sweeper: due rows by state and time. Partial, so synced rows (nearly all) cost nothing.
    op.create_index(
        "ix_invoice_sync_state_next_attempt_at",
        "invoice_sync",
        ["state", "next_attempt_at"],
        postgresql_where=sa.text("state IN ('pending', 'retrying', 'syncing')"),
    )
    op.create_index(
        "ix_invoice_sync_state",
        "invoice_sync",
        ["state"],
    )

    op.create_table(
        "sync_attempts",
        _id(),
        sa.Column("invoice_id", sa.BigInteger, nullable=False),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("step", sa.Text, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        _ts("started_at", nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("error_class", sa.Text),
        sa.Column("error_code", sa.Text),
        sa.Column("error_message", sa.Text),
        sa.Column("http_status", sa.Integer),
        sa.Column("request_id", sa.Text),
        sa.Column("calls", sa.Integer, nullable=False, server_default="0"),
        sa.PrimaryKeyConstraint("id", name="pk_sync_attempts"),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name="fk_sync_attempts_invoice_id_invoices",
            ondelete="CASCADE",
        ),
    )
    # History of one invoice, newest first.
    op.create_index(
        "ix_sync_attempts_invoice_id_id", "sync_attempts", ["invoice_id", sa.text("id DESC")]
    )

    op.create_table(
        "invoice_monthly_rollups",
        sa.Column("scope_id", sa.BigInteger, nullable=False),
        sa.Column("month", sa.Date, nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("shard", sa.SmallInteger, nullable=False),
        _cents("invoice_count"),
        _cents("subtotal_cents"),
        _cents("total_cents"),
        sa.PrimaryKeyConstraint(
            "scope_id", "month", "currency", "shard", name="pk_invoice_monthly_rollups"
        ),
        sa.CheckConstraint("scope_id >= 0 AND shard >= 0", name="key_range"),
        sa.CheckConstraint(
            "month = date_trunc('month', month)::date",
            name="first_of_month",
        ),
    )
    op.execute(IMMUTABILITY_SQL)


def downgrade() -> None:
    op.drop_table("invoice_monthly_rollups")
    op.drop_table("sync_attempts")
    op.drop_table("invoice_sync")
    op.drop_table("invoice_items")
    op.drop_table("invoices")
    op.drop_table("invoice_number_sequences")
    op.drop_table("api_tokens")
    op.drop_table("organizations")
    op.execute("DROP FUNCTION IF EXISTS invoice_items_guard()")
    op.execute("DROP FUNCTION IF EXISTS invoices_guard()")
