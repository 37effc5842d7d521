"""The database guards the usage events: exactly-once survives raw SQL.

Choices, and why:

- `usage_event_ids` (the forever-unique ids) and `usage_events` (what was counted) refuse
  UPDATE, DELETE and TRUNCATE unless the transaction is on the audited path: it has written a
  row to `usage_audit` first (who, when, why, its transaction id). Deleting an id would make it
  reusable (the event billed twice); updating an event would make it disagree with the line
  it was counted in, finalized or not. The app itself never updates or deletes them; the paths
  that may are few and named: the retention job that detaches a month's partition
  (`usage_events_detach_partition`, which writes its own audit row), the move of rows out of
  the DEFAULT partition when a month's partition is created (`usage_events_ensure_partition`,
  likewise), and an operator's deliberate repair (insert the audit row by hand, saying why).
- The check is "an audit row of this transaction exists" rather than a setting: a setting can be
  turned on by anyone without a trace, an audit row is the trace. `usage_audit` itself is
  append-only (UPDATE and DELETE refused; TRUNCATE only with the suite's reset opt-in,
  `billing.allow_truncate`, as for finalized invoices in 0003).
- Row triggers (BEFORE UPDATE OR DELETE) cost nothing on the ingest, which only inserts; they
  are cloned to every partition of `usage_events`, current and future. TRUNCATE fires no row
  trigger and a partition's TRUNCATE fires only the partition's statement triggers, so the
  TRUNCATE guard is put on the parent, on every existing partition, and by
  `usage_events_ensure_partition` on each new one.
- `usage_half_even(numeric)`: the line amount's rounding rule in SQL, so the ingest writes a
  usage line once per batch (quantity and amount in the same upsert) instead of upserting the
  quantity and then updating the amount (two row versions of every hot line per batch).
- Not covered: DDL (DROP TABLE, DETACH PARTITION by hand) and `session_replication_role =
  replica`, which only a superuser can use; an event trigger would need a superuser to install.

Revision ID: 0008
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0008"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The one rounding rule (models/money.py: line_amount_cents) in SQL, for the ingest's single
# write per line: half-even to a whole minor unit of a non-negative exact numeric. IMMUTABLE
# and plain SQL, so the planner inlines it.
HALF_EVEN_SQL = """
CREATE FUNCTION usage_half_even(x numeric) RETURNS numeric LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT CASE WHEN x - trunc(x) = 0.5 AND mod(trunc(x), 2) = 0 THEN trunc(x) ELSE round(x) END
$$;
"""

GUARDS_SQL = """
CREATE FUNCTION usage_audited() RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT EXISTS (SELECT 1 FROM usage_audit WHERE txid = txid_current())
$$;

CREATE FUNCTION usage_rows_guard() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NOT usage_audited() THEN
        RAISE EXCEPTION '% of % is refused: counted usage is immutable (the audited path: '
            'INSERT INTO usage_audit (reason) ... in the same transaction first)',
            TG_OP, TG_TABLE_NAME USING ERRCODE = 'integrity_constraint_violation';
    END IF;
    RETURN CASE TG_OP WHEN 'DELETE' THEN OLD ELSE NEW END;
END;
$$;

CREATE FUNCTION usage_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'TRUNCATE'
       AND coalesce(current_setting('billing.allow_truncate', true), '') = 'on' THEN
        RETURN NULL;
    END IF;
    RAISE EXCEPTION 'usage_audit is append-only: % refused', TG_OP
        USING ERRCODE = 'integrity_constraint_violation';
END;
$$;

CREATE TRIGGER usage_event_ids_rows_guard BEFORE UPDATE OR DELETE ON usage_event_ids
    FOR EACH ROW EXECUTE FUNCTION usage_rows_guard();
CREATE TRIGGER usage_event_ids_truncate BEFORE TRUNCATE ON usage_event_ids
    FOR EACH STATEMENT EXECUTE FUNCTION usage_rows_guard();
CREATE TRIGGER usage_events_rows_guard BEFORE UPDATE OR DELETE ON usage_events
    FOR EACH ROW EXECUTE FUNCTION usage_rows_guard();
CREATE TRIGGER usage_events_truncate BEFORE TRUNCATE ON usage_events
    FOR EACH STATEMENT EXECUTE FUNCTION usage_rows_guard();
CREATE TRIGGER usage_audit_append_only BEFORE UPDATE OR DELETE ON usage_audit
    FOR EACH ROW EXECUTE FUNCTION usage_audit_append_only();
CREATE TRIGGER usage_audit_truncate BEFORE TRUNCATE ON usage_audit
    FOR EACH STATEMENT EXECUTE FUNCTION usage_audit_append_only();

DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits
                WHERE inhparent = 'usage_events'::regclass LOOP
        EXECUTE format('CREATE TRIGGER usage_events_truncate BEFORE TRUNCATE ON %s '
                       'FOR EACH STATEMENT EXECUTE FUNCTION usage_rows_guard()', part);
    END LOOP;
END $$;
"""

# 0002's function, with the audit row for the rows it moves out of the DEFAULT partition and
# the TRUNCATE guard on the partition it creates.
ENSURE_PARTITION_SQL = """
CREATE OR REPLACE FUNCTION usage_events_ensure_partition(month date) RETURNS text
LANGUAGE plpgsql AS $$
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
    IF EXISTS (SELECT 1 FROM usage_events_default WHERE occurred_at >= lo AND occurred_at < hi)
    THEN
        INSERT INTO usage_audit (reason, detail) VALUES (
            'move rows of a new month out of the DEFAULT partition',
            jsonb_build_object('partition', name));
    END IF;
    EXECUTE format('WITH moved AS (DELETE FROM usage_events_default WHERE occurred_at >= %L '
                   'AND occurred_at < %L RETURNING *) INSERT INTO %I SELECT * FROM moved',
                   lo, hi, name);
    EXECUTE format('ALTER TABLE usage_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)',
                   name, lo, hi);
    EXECUTE format('CREATE TRIGGER usage_events_truncate BEFORE TRUNCATE ON %I '
                   'FOR EACH STATEMENT EXECUTE FUNCTION usage_rows_guard()', name);
    RETURN name;
END;
$$;

CREATE FUNCTION usage_events_detach_partition(month date, reason text) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    name text := 'usage_events_' || to_char(date_trunc('month', month), 'YYYY_MM');
BEGIN
    IF to_regclass(name) IS NULL THEN
        RAISE EXCEPTION 'no partition %', name;
    END IF;
    INSERT INTO usage_audit (reason, detail)
        VALUES (reason, jsonb_build_object('detached', name));
    EXECUTE format('ALTER TABLE usage_events DETACH PARTITION %I', name);
    RETURN name;
END;
$$;
"""

OLD_ENSURE_PARTITION_SQL = """
CREATE OR REPLACE FUNCTION usage_events_ensure_partition(month date) RETURNS text
LANGUAGE plpgsql AS $$
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


def upgrade() -> None:
    op.create_table(
        "usage_audit",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()),
        sa.Column("txid", sa.BigInteger, nullable=False, server_default=sa.text("txid_current()")),
        sa.Column("actor", sa.Text, nullable=False, server_default=sa.text("current_user")),
        sa.Column("reason", sa.Text, nullable=False),
        sa.Column("detail", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.create_index("ix_usage_audit_txid", "usage_audit", ["txid"])
    op.execute(GUARDS_SQL)
    op.execute(ENSURE_PARTITION_SQL)
    op.execute(HALF_EVEN_SQL)


def downgrade() -> None:
    op.execute("DROP FUNCTION usage_half_even(numeric)")
    op.execute("DROP FUNCTION usage_events_detach_partition(date, text)")
    op.execute(OLD_ENSURE_PARTITION_SQL)
    op.execute(
        """
DO $$
DECLARE part regclass;
BEGIN
    FOR part IN SELECT inhrelid::regclass FROM pg_inherits
                WHERE inhparent = 'usage_events'::regclass LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS usage_events_truncate ON %s', part);
    END LOOP;
END $$;
DROP TRIGGER usage_events_truncate ON usage_events;
DROP TRIGGER usage_events_rows_guard ON usage_events;
DROP TRIGGER usage_event_ids_truncate ON usage_event_ids;
DROP TRIGGER usage_event_ids_rows_guard ON usage_event_ids;
"""
    )
    op.drop_table("usage_audit")  # its triggers go with it
    op.execute("DROP FUNCTION usage_audit_append_only()")
    op.execute("DROP FUNCTION usage_rows_guard()")
    op.execute("DROP FUNCTION usage_audited()")
