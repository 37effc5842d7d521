"""Outbound webhooks, human units and pay links.

Outbound webhooks (docs/webhooks-out.md has the design):

- `webhook_endpoints`: URLs an admin registered, the event types each wants, and its signing
  secret (kept in clear: every delivery is signed with it). Deleting one sets `deleted_at`, so
  the delivery log still names the URL.
- `webhook_events`: what happened, written in the transaction that made it happen. The id
  (`evt_` + 32 hex) is what a receiver deduplicates on; every attempt sends the same one.
- `webhook_deliveries`: one row per (event, endpoint), the outbox the beat sweep claims with
  `FOR UPDATE SKIP LOCKED` (`ix_webhook_deliveries_due`, partial on pending rows).
- `webhook_delivery_attempts`: one row per HTTP attempt, the operator's log.
- A trigger, by hand: an AFTER INSERT statement trigger on `webhook_events` fans each new event
  out to the live endpoints that want its type (the one place that rule lives, so every
  emitter, Python or SQL, gets it), set-based (a transition table).
- `webhook_invoice_json(invoices)`: the invoice object of invoice.* events, one definition for
  every emitter.

Human units: `prices.display_name` ("Shared CPU"), `prices.display_unit` and
`prices.display_factor` (stored units per display unit, e.g. 2,592,000 GB-seconds per GB-month),
unit and factor both or neither. Existing rows keep NULL (lines then read in stored units);
`setPrice` with the display fields adds a version that has them.

Pay links: `invoice_sync.hosted_invoice_url` and `invoice_sync.invoice_pdf_url`, from Stripe's
finalized invoice (on the sync row: `invoices` is guarded once finalized).

Revision ID: 0011
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import ARRAY, JSONB

revision: str = "0011"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

EVENT_ID_DEFAULT = "'evt_' || replace(gen_random_uuid()::text, '-', '')"

FUNCTIONS = """
CREATE FUNCTION webhook_invoice_json(i invoices) RETURNS jsonb LANGUAGE sql STABLE AS $$
    SELECT jsonb_build_object(
        'id', i.public_id,
        'number', i.number,
        'organization', (SELECT o.slug FROM organizations o WHERE o.id = i.organization_id),
        'status', i.status,
        'currency', i.currency,
        'subtotal_cents', i.subtotal_cents,
        'total_cents', i.total_cents,
        'period', to_char(i.period_start, 'YYYY-MM'),
        'period_start', i.period_start,
        'period_end', i.period_end,
        'due_date', i.due_date,
        'finalized_at', i.finalized_at)
$$;

CREATE FUNCTION webhook_events_fan_out() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO webhook_deliveries (event_id, endpoint_id, next_attempt_at)
    SELECT e.id, ep.id, e.created_at
    FROM new_events e
    JOIN webhook_endpoints ep ON ep.deleted_at IS NULL AND e.type = ANY (ep.event_types)
    ORDER BY e.id, ep.id
    ON CONFLICT DO NOTHING;
    RETURN NULL;
END $$;

CREATE TRIGGER webhook_events_fan_out AFTER INSERT ON webhook_events
    REFERENCING NEW TABLE AS new_events
    FOR EACH STATEMENT EXECUTE FUNCTION webhook_events_fan_out();

"""


def upgrade() -> None:
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column("public_id", sa.Text, nullable=False, unique=True),
        sa.Column("url", sa.Text, nullable=False),
        sa.Column("event_types", ARRAY(sa.Text), nullable=False),
        sa.Column("secret", sa.Text, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("deleted_at", sa.DateTime(timezone=True)),
        sa.CheckConstraint("cardinality(event_types) >= 1", name="some_event_types"),
    )
    op.create_table(
        "webhook_events",
        sa.Column("id", sa.Text, primary_key=True, server_default=sa.text(EVENT_ID_DEFAULT)),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column(
            "organization_id",
            sa.BigInteger,
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
        ),
        sa.Column("object_id", sa.Text),
        sa.Column("payload", JSONB, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_webhook_events_created_at", "webhook_events", ["created_at"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "event_id",
            sa.Text,
            sa.ForeignKey("webhook_events.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column(
            "endpoint_id",
            sa.BigInteger,
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("state", sa.Text, nullable=False, server_default="pending"),
        sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True)),
        sa.Column("delivered_at", sa.DateTime(timezone=True)),
        sa.Column("last_http_status", sa.Integer),
        sa.Column("last_error", sa.Text),
        sa.UniqueConstraint("event_id", "endpoint_id"),
        sa.CheckConstraint(
            "state IN ('pending', 'delivered', 'failed', 'cancelled')", name="known_state"
        ),
    )
    op.execute(
        "CREATE INDEX ix_webhook_deliveries_due ON webhook_deliveries (next_attempt_at)"
        " WHERE state = 'pending'"
    )
    op.create_index("ix_webhook_deliveries_endpoint_id", "webhook_deliveries", ["endpoint_id"])
    op.create_table(
        "webhook_delivery_attempts",
        sa.Column("id", sa.BigInteger, sa.Identity(), primary_key=True),
        sa.Column(
            "delivery_id",
            sa.BigInteger,
            sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("attempt", sa.Integer, nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("duration_ms", sa.Integer, nullable=False),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("http_status", sa.Integer),
        sa.Column("error", sa.Text),
    )
    op.execute(FUNCTIONS)

    op.add_column("prices", sa.Column("display_name", sa.Text))
    op.add_column("prices", sa.Column("display_unit", sa.Text))
    op.add_column("prices", sa.Column("display_factor", sa.Numeric(24, 12)))
    op.create_check_constraint(
        "display_unit_and_factor",
        "prices",
        "(display_unit IS NULL) = (display_factor IS NULL)"
        " AND (display_factor IS NULL OR display_factor > 0)",
    )
    op.add_column("invoice_sync", sa.Column("hosted_invoice_url", sa.Text))
    op.add_column("invoice_sync", sa.Column("invoice_pdf_url", sa.Text))


def downgrade() -> None:
    op.drop_column("invoice_sync", "invoice_pdf_url")
    op.drop_column("invoice_sync", "hosted_invoice_url")
    # The CHECK on them goes with the columns.
    op.drop_column("prices", "display_factor")
    op.drop_column("prices", "display_unit")
    op.drop_column("prices", "display_name")
    op.execute("DROP TRIGGER IF EXISTS webhook_events_fan_out ON webhook_events")
    op.execute("DROP FUNCTION IF EXISTS webhook_events_fan_out()")
    op.drop_table("webhook_delivery_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("webhook_events")
    op.drop_table("webhook_endpoints")
    op.execute("DROP FUNCTION IF EXISTS webhook_invoice_json(invoices)")
