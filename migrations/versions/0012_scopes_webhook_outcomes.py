"""Token scopes the database enforces, and a verdict on every stored Stripe event.

- `api_tokens`: a metering token belongs to no organization (CHECK metering_has_no_org). It
  posts usage for every organization and reads nothing; bound to one, the read paths that
  scope by organization would have shown it that organization's invoices. Existing metering
  tokens bound to an organization are revoked here, not silently rebound: whoever holds one
  makes a new one (`billing token create --metering`).
- `stripe_events.verdict`: what became of a signed event, one of a closed set (CHECK
  verdict_known): applied, ignored, malformed, unknown invoice, not applicable to a DRAFT;
  `outcome` stays the sentence for people. Indexed with received_at for
  `billing webhooks list --outcome malformed`.
- `stripe_events.created` may be NULL: a malformed event is stored even when its own `created`
  is what cannot be read (1e15, -1e12, true).

Revision ID: 0012
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

VERDICTS = "'applied', 'ignored', 'malformed', 'unknown invoice', 'not applicable to a DRAFT'"


def upgrade() -> None:
    # A metering token bound to an organization cannot be made valid by moving it: it is cut
    # loose from the organization and revoked, so the CHECK holds for every row.
    op.execute(
        "UPDATE api_tokens SET revoked_at = coalesce(revoked_at, now()), organization_id = NULL "
        "WHERE scope = 'metering' AND organization_id IS NOT NULL"
    )
    op.create_check_constraint(
        "metering_has_no_org", "api_tokens", "scope <> 'metering' OR organization_id IS NULL"
    )
    op.add_column(
        "stripe_events",
        sa.Column("verdict", sa.Text, nullable=False, server_default="applied"),
    )
    op.execute(
        "UPDATE stripe_events SET verdict = CASE "
        "WHEN outcome = 'ignored: not one of our invoices' THEN 'unknown invoice' "
        "WHEN outcome = 'ignored: not an invoice' THEN 'malformed' "
        "WHEN outcome LIKE 'ignored%' THEN 'ignored' ELSE 'applied' END"
    )
    op.alter_column("stripe_events", "verdict", server_default=None)
    op.create_check_constraint("verdict_known", "stripe_events", f"verdict IN ({VERDICTS})")
    op.create_index(
        "ix_stripe_events_verdict_received_at", "stripe_events", ["verdict", "received_at"]
    )
    op.alter_column("stripe_events", "created", nullable=True)


def downgrade() -> None:
    op.execute("UPDATE stripe_events SET created = received_at WHERE created IS NULL")
    op.alter_column("stripe_events", "created", nullable=False)
    op.drop_index("ix_stripe_events_verdict_received_at", table_name="stripe_events")
    op.execute("ALTER TABLE stripe_events DROP CONSTRAINT ck_stripe_events_verdict_known")
    op.drop_column("stripe_events", "verdict")
    op.execute("ALTER TABLE api_tokens DROP CONSTRAINT ck_api_tokens_metering_has_no_org")
