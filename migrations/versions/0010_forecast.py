"""Forecast spend alerts: `spend_alerts.kind`, 'actual' (the draft's total reaches the
threshold; evaluated in the ingest transaction) or 'forecast' (the projection's low reaches it;
evaluated by a beat task, docs/forecast.md). Existing alerts are 'actual'. A threshold is unique
per (organization, currency, kind): $500 actual and $500 forecast are two alerts. Firings keep
their (alert, period) key, so each kind fires once per period.

The open month in monthlySummary: `ix_invoices_draft_period_start`, partial on drafts, lets the
platform-wide summary add the drafts of the current and previous month by reading only those
drafts (models/rollup.py _OPEN_DRAFTS), never the finalized invoices of the months.

Revision ID: 0010
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "spend_alerts",
        sa.Column("kind", sa.Text, nullable=False, server_default=sa.text("'actual'")),
    )
    op.create_check_constraint("kind_known", "spend_alerts", "kind IN ('actual', 'forecast')")
    op.drop_constraint(
        "uq_spend_alerts_organization_id_currency_threshold_cents", "spend_alerts", type_="unique"
    )
    op.create_unique_constraint(
        "uq_spend_alerts_organization_id_currency_kind_threshold_cents",
        "spend_alerts",
        ["organization_id", "currency", "kind", "threshold_cents"],
    )
    op.create_index(
        "ix_invoices_draft_period_start",
        "invoices",
        ["period_start"],
        postgresql_include=["currency", "subtotal_cents", "total_cents"],
        postgresql_where=sa.text("status = 'draft'"),
    )


def downgrade() -> None:
    op.drop_index("ix_invoices_draft_period_start", table_name="invoices")
    # Forecast alerts have no meaning before this revision: they go, with their firings.
    op.execute("DELETE FROM spend_alerts WHERE kind = 'forecast'")
    op.drop_constraint(
        "uq_spend_alerts_organization_id_currency_kind_threshold_cents",
        "spend_alerts",
        type_="unique",
    )
    op.create_unique_constraint(
        "uq_spend_alerts_organization_id_currency_threshold_cents",
        "spend_alerts",
        ["organization_id", "currency", "threshold_cents"],
    )
    op.drop_constraint("kind_known", "spend_alerts", type_="check")
    op.drop_column("spend_alerts", "kind")
