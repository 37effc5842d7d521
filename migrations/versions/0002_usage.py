"""Usage ingestion: versioned prices, usage events partitioned by month, usage drafts, metering
tokens, and usage aggregate lines on invoice_items.

Written by hand, like 0001: partitioning, the append-only trigger on prices, the NULLS NOT
DISTINCT unique index and the partition function are invisible to autogenerate.

Choices, and why:

- `prices` is append-only (a trigger refuses UPDATE and DELETE): a price change is a new version
  with its own `effective_from`, so every line keeps pointing at the exact version that priced
  it. The unique index (product, currency, organization_id, effective_from) NULLS NOT DISTINCT is
  also the lookup index: "newest version of this product in this currency, for this organization
  or global, in effect at t" is a backward range scan on it.
- `usage_events` is declaratively PARTITIONED BY RANGE (occurred_at), one partition per UTC
  month, so old months can be detached and archived without touching the hot one. Its primary
  key must include the partition key, so it cannot say "an organization's event id is unique
  forever" (an id resent with a different occurred_at would land in another partition). That
  promise lives in `usage_event_ids`, a plain table keyed (organization_id, event_id) with the
  payload's SHA-256: the ingest inserts there first with ON CONFLICT DO NOTHING, which also makes
  two concurrent requests carrying the same event wait on each other and count it once.
  It grows by ~100 bytes per event; at 100x volume it would be hash-partitioned by
  organization_id (allowed, the key contains it); see NOTES.md.
- Partitions are created ahead, never inside an ingest transaction (creating one takes strong
  locks on the parent): `usage_events_ensure_partition(month)` creates a month idempotently, and
  moves any rows the DEFAULT partition caught for that month into it first, so it can be run
  late. This migration creates the months from two before to three after today; the API runs it
  for the current and next month when it sees a new month, and `billing usage partitions` does it
  by hand. The DEFAULT partition is the safety net: an event never fails for want of a partition.
- `usage_events` has no foreign keys: it is an append-only log that is detached to cold storage
  month by month, and per-row FK checks would cost ingest throughput for rows that the same
  transaction has just validated.
- `usage_drafts` maps (organization, period) to the draft that usage of that period goes to, so
  concurrent ingests agree on one draft; the row stays after the invoice is finalized, which is
  how a late event learns that its period is closed.
- `invoice_items.price_id` marks a usage aggregate (NULL for hand-written lines), and
  `first_usage_at` / `last_usage_at` span its events (the projection's run rate); the partial
  unique index on (invoice_id, product, app, region, price_id, period_start) NULLS NOT DISTINCT is
  the line key the ingest upserts into.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


PRICES_GUARD_SQL = """
CREATE FUNCTION prices_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'prices are append-only: add a new version with a later effective_from'
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;
CREATE TRIGGER prices_append_only BEFORE UPDATE OR DELETE ON prices
    FOR EACH ROW EXECUTE FUNCTION prices_append_only();
"""

# Creates the partition of `usage_events` for the UTC month starting at `month`, unless it exists.
# Rows the DEFAULT partition already holds for that month are moved first: PostgreSQL refuses to
# attach a range that the default partition has rows for.
ENSURE_PARTITION_SQL = """
CREATE FUNCTION usage_events_ensure_partition(month date) RETURNS text LANGUAGE plpgsql AS $$
DECLARE
    lo timestamptz := (date_trunc('month', month)::date)::timestamp AT TIME ZONE 'UTC';
    hi timestamptz := ((date_trunc('month', month) + interval '1 month')::date)::timestamp
                      AT TIME ZONE 'UTC';
    name text := 'usage_events_' || to_char(date_trunc('month', month), 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NOT NULL THEN
        RETURN name;
    END IF;
    EXECUTE format('CREATE TABLE %I (LIKE usage_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)',
                   name);
    EXECUTE format('WITH moved AS (DELETE FROM usage_events_default WHERE occurred_at >= %L '
                   'AND occurred_at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   lo, hi, name);
    EXECUTE format('ALTER TABLE usage_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, lo, hi);
    RETURN name;
END;
$$;
"""


def _drop_token_checks() -> None:
    # Raw SQL: op.drop_constraint would prefix the naming convention a second time.
    op.execute("ALTER TABLE api_tokens DROP CONSTRAINT ck_api_tokens_scope_known")
    op.execute("ALTER TABLE api_tokens DROP CONSTRAINT ck_api_tokens_member_has_org")


def upgrade() -> None:
    # Metering tokens: the platform's usage pipeline, allowed to post usage and nothing else.
    _drop_token_checks()
    op.create_check_constraint(
        "scope_known", "api_tokens", "scope IN ('member', 'admin', 'metering')"
    )
    op.create_check_constraint(
        "member_has_org", "api_tokens", "scope <> 'member' OR organization_id IS NOT NULL"
    )

    op.create_table(
        "prices",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("product", sa.Text, nullable=False),
        sa.Column("unit", sa.Text, nullable=False),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("unit_price", sa.Numeric(24, 12), nullable=False),
        sa.Column("effective_from", sa.DateTime(timezone=True), nullable=False),
        sa.Column("organization_id", sa.BigInteger),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("id", name="pk_prices"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_prices_organization_id_organizations",
        ),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        sa.CheckConstraint("unit_price >= 0", name="unit_price_non_negative"),
    )
    op.create_index(
        "uq_prices_product_currency_organization_id_effective_from",
        "prices",
        ["product", "currency", "organization_id", "effective_from"],
        unique=True,
        postgresql_nulls_not_distinct=True,
    )
    op.execute(PRICES_GUARD_SQL)

    op.create_table(
        "usage_drafts",
        sa.Column("organization_id", sa.BigInteger, nullable=False),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("invoice_id", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "period_start", name="pk_usage_drafts"),
        sa.UniqueConstraint("invoice_id", name="uq_usage_drafts_invoice_id"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_usage_drafts_organization_id_organizations",
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name="fk_usage_drafts_invoice_id_invoices",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint(
            "period_start = date_trunc('month', period_start)::date", name="first_of_month"
        ),
    )

    op.create_table(
        "usage_event_ids",
        sa.Column("organization_id", sa.BigInteger, nullable=False),
        sa.Column("event_id", sa.Text, nullable=False),
        sa.Column("payload_sha256", sa.LargeBinary, nullable=False),
        sa.Column("occurred_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("organization_id", "event_id", name="pk_usage_event_ids"),
        sa.ForeignKeyConstraint(
            ["organization_id"],
            ["organizations.id"],
            name="fk_usage_event_ids_organization_id_organizations",
            ondelete="CASCADE",
        ),
    )

    op.execute(
        """
        CREATE TABLE usage_events (
            organization_id bigint NOT NULL,
            event_id text NOT NULL,
            occurred_at timestamptz NOT NULL,
            period_start date NOT NULL,
            product text NOT NULL,
            app text,
            region text,
            quantity numeric(20, 9) NOT NULL,
            price_id bigint NOT NULL,
            invoice_id bigint NOT NULL,
            metadata jsonb NOT NULL DEFAULT '{}'::jsonb,
            received_at timestamptz NOT NULL,
            CONSTRAINT pk_usage_events PRIMARY KEY (organization_id, event_id, occurred_at),
            CONSTRAINT ck_usage_events_quantity_non_negative CHECK (quantity >= 0)
        ) PARTITION BY RANGE (occurred_at)
        """
    )
    # Verify and replay read one draft's events: by the invoice they landed on.
    op.execute("CREATE INDEX ix_usage_events_invoice_id ON usage_events (invoice_id)")
    op.execute("CREATE TABLE usage_events_default PARTITION OF usage_events DEFAULT")
    op.execute(ENSURE_PARTITION_SQL)
    op.execute(
        "SELECT usage_events_ensure_partition(m::date) FROM generate_series("
        "date_trunc('month', now() AT TIME ZONE 'UTC') - interval '2 months', "
        "date_trunc('month', now() AT TIME ZONE 'UTC') + interval '3 months', "
        "interval '1 month') AS m"
    )

    op.add_column("invoice_items", sa.Column("price_id", sa.BigInteger))
    # The span of a usage line's events (min and max occurred_at): the projection's run rate.
    op.add_column("invoice_items", sa.Column("first_usage_at", sa.DateTime(timezone=True)))
    op.add_column("invoice_items", sa.Column("last_usage_at", sa.DateTime(timezone=True)))
    op.create_foreign_key(
        "fk_invoice_items_price_id_prices", "invoice_items", "prices", ["price_id"], ["id"]
    )
    op.create_check_constraint(
        "usage_aggregate_kind", "invoice_items", "price_id IS NULL OR kind = 'usage'"
    )
    op.create_index(
        "uq_invoice_items_usage_key",
        "invoice_items",
        ["invoice_id", "product", "app", "region", "price_id", "period_start"],
        unique=True,
        postgresql_nulls_not_distinct=True,
        postgresql_where=sa.text("price_id IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("uq_invoice_items_usage_key", table_name="invoice_items")
    op.drop_column("invoice_items", "last_usage_at")
    op.drop_column("invoice_items", "first_usage_at")
    op.drop_column("invoice_items", "price_id")  # its FK and CHECK go with it
    op.execute("DROP TABLE usage_events")  # and every partition with it
    op.execute("DROP FUNCTION IF EXISTS usage_events_ensure_partition(date)")
    op.drop_table("usage_event_ids")
    op.drop_table("usage_drafts")
    op.drop_table("prices")
    op.execute("DROP FUNCTION IF EXISTS prices_append_only()")
    op.execute("DELETE FROM api_tokens WHERE scope = 'metering'")
    _drop_token_checks()
    op.create_check_constraint("scope_known", "api_tokens", "scope IN ('member', 'admin')")
    op.create_check_constraint(
        "member_has_org", "api_tokens", "scope = 'admin' OR organization_id IS NOT NULL"
    )
