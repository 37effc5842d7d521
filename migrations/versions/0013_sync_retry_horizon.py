"""Retries measured in time: `invoice_sync.retrying_since`.

The time of the invoice's first failed attempt since it last synced (or since a resync or
retryFailedSyncs reset its attempts); NULL while nothing has failed. A retryable failure is
retried while `retrying_since + SYNC_RETRY_HORIZON` lies ahead, and FAILS the invoice after
(models/sync_state/outbox.py `fail`). Existing RETRYING rows start their horizon at their last
attempt, the closest we know to their first failure.

Revision ID: 0013
Revises: 0006
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("invoice_sync", sa.Column("retrying_since", sa.DateTime(timezone=True)))
    op.execute(
        "UPDATE invoice_sync SET retrying_since = coalesce(last_attempt_at, updated_at)"
        " WHERE state IN ('retrying', 'syncing') AND attempts > 0"
    )


def downgrade() -> None:
    op.drop_column("invoice_sync", "retrying_since")
