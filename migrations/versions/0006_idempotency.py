"""Retry-safe writes: `idempotency_keys`, one row per (token, key) a mutation was sent with.

Choices, and why:

- The primary key (token_id, key) is the whole concurrency story: the row is inserted in the
  mutation's own transaction, so a second request with the same key waits on the first one's
  uncommitted row and then either replays it (committed) or runs (rolled back). No lock table,
  no "in progress" state that a crashed request could leave behind.
- Keys belong to a token (a client's retry comes with its own token), and go with it
  (ON DELETE CASCADE).
- `fingerprint` is the SHA-256 of the mutation's name and its canonical arguments; `outcome` is
  what the first answer referred to (gql/core/idempotency.py), not a response body, so a
  replay works for any selection set.
- `ix_idempotency_keys_created_at` serves the hourly purge (`created_at < now() - keep`).

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "idempotency_keys",
        sa.Column(
            "token_id",
            sa.BigInteger,
            sa.ForeignKey("api_tokens.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("key", sa.Text, primary_key=True),
        sa.Column("operation", sa.Text, nullable=False),
        sa.Column("fingerprint", sa.CHAR(64), nullable=False),
        sa.Column("outcome", JSONB, nullable=False),
        sa.Column(
            "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
        ),
    )
    op.create_index("ix_idempotency_keys_created_at", "idempotency_keys", ["created_at"])


def downgrade() -> None:
    op.drop_index("ix_idempotency_keys_created_at", table_name="idempotency_keys")
    op.drop_table("idempotency_keys")
