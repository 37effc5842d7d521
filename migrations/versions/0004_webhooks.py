"""Stripe as it really behaves: inbound webhook events, payment state, and the sync's memory of
what it sent (remote due date, idempotency key generations, replaced remote invoices).

- `stripe_events`: every verified event, stored once by Stripe's id before it is acted on, so a
  duplicate delivery is recognised by the primary key and changes nothing.
- `invoice_payments`: the payment state users read (`Invoice.payment`), with the `created` of
  the Stripe event it came from, so an older event arriving late never overwrites a newer one.
- `invoice_sync.remote_due_date`: the due date sent to Stripe (never in the past; see NOTES).
- `invoice_sync.key_generations`: per step, the idempotency key generation in use after a
  replayed 500 poisoned the previous key (`invoice:{id}:finalize:2`).
- `invoice_sync.replaced_stripe_invoice_ids`: remote invoices given up on purpose by
  `resyncInvoice(recreate: true)`; lookups never adopt them again.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "stripe_events",
        sa.Column("id", sa.Text, nullable=False),
        sa.Column("type", sa.Text, nullable=False),
        sa.Column("object_id", sa.Text),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "received_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.Column("outcome", sa.Text, nullable=False),
        sa.Column("payload", JSONB, nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_stripe_events"),
    )
    op.create_index("ix_stripe_events_object_id", "stripe_events", ["object_id"])
    op.create_table(
        "invoice_payments",
        sa.Column("invoice_id", sa.BigInteger, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("attempt_count", sa.Integer, nullable=False, server_default="0"),
        sa.Column("last_failure_message", sa.Text),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True)),
        sa.Column("as_of", sa.DateTime(timezone=True), nullable=False),
        sa.Column(
            "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
        sa.PrimaryKeyConstraint("invoice_id", name="pk_invoice_payments"),
        sa.ForeignKeyConstraint(
            ["invoice_id"],
            ["invoices.id"],
            name="fk_invoice_payments_invoice_id_invoices",
            ondelete="CASCADE",
        ),
        sa.CheckConstraint("status IN ('pending', 'failed', 'succeeded')", name="status_known"),
    )
    op.add_column("invoice_sync", sa.Column("remote_due_date", sa.Date))
    op.add_column(
        "invoice_sync",
        sa.Column("key_generations", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    op.add_column(
        "invoice_sync",
        sa.Column(
            "replaced_stripe_invoice_ids",
            JSONB,
            nullable=False,
            server_default=sa.text("'[]'::jsonb"),
        ),
    )


def downgrade() -> None:
    op.drop_column("invoice_sync", "replaced_stripe_invoice_ids")
    op.drop_column("invoice_sync", "key_generations")
    op.drop_column("invoice_sync", "remote_due_date")
    op.drop_table("invoice_payments")
    op.drop_index("ix_stripe_events_object_id", table_name="stripe_events")
    op.drop_table("stripe_events")
