"""The month-end close and spend alerts: subscriptions (recurring lines), billing_runs (one row
per closed period), billing_run_invoices (what the close did to each draft), spend alerts,
their firings and the notification outbox.

Written by hand, like the others. Choices, and why:

- The close claims work on `usage_drafts` rows (one per organization and period) with
  `FOR UPDATE SKIP LOCKED`, in organization order, so it needs (period_start, organization_id):
  `ix_usage_drafts_period_start_organization_id` is the claim's index. The claim locks the
  mapping row, never the invoice, so it orders with nothing else: the invoice's own row lock
  (taken by `invoices.finalize`, and by the ingest before it touches lines) is what orders the
  finalize with racing usage.
- `billing_run_invoices` has one row per draft the close has dealt with (finalized, skipped,
  failed): the exact counters of `billing_runs` are recomputed from it, a failure keeps its code
  and message for the operator, and a skipped (empty) draft is not claimed again while it stays
  empty.
- `spend_alert_firings` is keyed (alert, period): the primary key is what makes a threshold
  fire once per period, whatever the concurrency (the ingest inserts ON CONFLICT DO NOTHING).
- `notification_outbox` is what a mailer would read (unsent rows by a partial index); nothing
  sends e-mail here.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True)


def _ts(name: str, *, nullable: bool = False, default: bool = False) -> sa.Column[object]:
    return sa.Column(
        name,
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if default else None,
    )


def _org() -> sa.Column[int]:
    return sa.Column(
        "organization_id",
        sa.BigInteger,
        sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        nullable=False,
    )


def upgrade() -> None:
    op.create_table(
        "subscriptions",
        _id(),
        _org(),
        sa.Column("product", sa.Text, nullable=False),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("quantity", sa.Numeric(20, 9), nullable=False),
        sa.Column("since", sa.Date, nullable=False),
        sa.Column("until", sa.Date),
        _ts("created_at", default=True),
        sa.CheckConstraint("quantity >= 0", name="quantity_non_negative"),
        sa.CheckConstraint("until IS NULL OR until > since", name="until_after_since"),
    )
    op.create_index("ix_subscriptions_organization_id", "subscriptions", ["organization_id"])
    op.create_table(
        "billing_runs",
        sa.Column("period_start", sa.Date, primary_key=True),
        _ts("started_at"),
        _ts("finished_at", nullable=True),
        sa.Column("drafts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("finalized", sa.Integer, nullable=False, server_default="0"),
        sa.Column("skipped", sa.Integer, nullable=False, server_default="0"),
        sa.Column("failed", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_error", sa.Text),
        _ts("updated_at", default=True),
    )
    op.create_table(
        "billing_run_invoices",
        sa.Column(
            "invoice_id",
            sa.BigInteger,
            sa.ForeignKey("invoices.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("period_start", sa.Date, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="1"),
        sa.Column("error_code", sa.Text),
        sa.Column("error_message", sa.Text),
        _ts("at"),
        sa.CheckConstraint("outcome IN ('finalized', 'skipped', 'failed')", name="outcome_known"),
    )
    op.create_index(
        "ix_billing_run_invoices_period_start_outcome",
        "billing_run_invoices",
        ["period_start", "outcome"],
    )
    op.create_index(
        "ix_usage_drafts_period_start_organization_id",
        "usage_drafts",
        ["period_start", "organization_id"],
    )
    op.create_table(
        "spend_alerts",
        _id(),
        _org(),
        sa.Column("currency", sa.CHAR(3), nullable=False),
        sa.Column("threshold_cents", sa.BigInteger, nullable=False),
        _ts("created_at", default=True),
        sa.CheckConstraint("threshold_cents > 0", name="threshold_positive"),
        sa.CheckConstraint("currency ~ '^[A-Z]{3}$'", name="currency_iso"),
        sa.UniqueConstraint("organization_id", "currency", "threshold_cents"),
    )
    op.create_table(
        "spend_alert_firings",
        sa.Column(
            "alert_id",
            sa.BigInteger,
            sa.ForeignKey("spend_alerts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("period_start", sa.Date, primary_key=True),
        sa.Column(
            "invoice_id",
            sa.BigInteger,
            sa.ForeignKey("invoices.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("total_cents", sa.BigInteger, nullable=False),
        _ts("triggered_at"),
    )
    op.create_table(
        "notification_outbox",
        _id(),
        _org(),
        sa.Column("kind", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
        _ts("created_at"),
        _ts("sent_at", nullable=True),
    )
    op.execute(
        "CREATE INDEX ix_notification_outbox_unsent ON notification_outbox (id) "
        "WHERE sent_at IS NULL"
    )


def downgrade() -> None:
    op.drop_table("notification_outbox")
    op.drop_table("spend_alert_firings")
    op.drop_table("spend_alerts")
    op.drop_index("ix_usage_drafts_period_start_organization_id", table_name="usage_drafts")
    op.drop_table("billing_run_invoices")
    op.drop_table("billing_runs")
    op.drop_table("subscriptions")
