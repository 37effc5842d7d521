"""The database tables, as SQLModel classes. The migrations in `migrations/` are the source of truth
for constraints and triggers; `tests/test_migrations.py` checks that these classes match them.

Money is `bigint` minor units (`*_cents`), quantities and unit prices are NUMERIC, calendar
things are `date`, instants are `timestamptz` (UTC).
"""

from __future__ import annotations

from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, JSONB
from sqlmodel import Field, SQLModel

SQLModel.metadata.naming_convention = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class InvoiceStatus(StrEnum):
    DRAFT = "draft"
    OPEN = "open"
    PAID = "paid"
    VOID = "void"
    UNCOLLECTIBLE = "uncollectible"


class LineItemKind(StrEnum):
    USAGE = "usage"
    SUBSCRIPTION = "subscription"
    ONE_OFF = "one_off"
    CREDIT = "credit"
    ADJUSTMENT = "adjustment"


class TokenScope(StrEnum):
    MEMBER = "member"
    ADMIN = "admin"
    METERING = "metering"  # the platform's usage pipeline: may post usage, nothing else


class SyncStatus(StrEnum):
    """Where an invoice stands with Stripe. Drafts have no sync row: NOT_REQUIRED."""

    NOT_REQUIRED = "not_required"
    PENDING = "pending"
    SYNCING = "syncing"
    SYNCED = "synced"
    RETRYING = "retrying"
    FAILED = "failed"


def _ts(*, nullable: bool = True, server_default: bool = False) -> Any:
    return sa.Column(
        sa.DateTime(timezone=True),
        nullable=nullable,
        server_default=sa.func.now() if server_default else None,
    )


def _bigint(*, default: int | None = None) -> Any:
    return sa.Column(
        sa.BigInteger, nullable=False, server_default=None if default is None else str(default)
    )


class Organization(SQLModel, table=True):
    __tablename__ = "organizations"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    public_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    slug: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    billing_email: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    invoice_prefix: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    default_currency: str = Field(sa_column=sa.Column(sa.CHAR(3), nullable=False))
    stripe_customer_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class ApiToken(SQLModel, table=True):
    __tablename__ = "api_tokens"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    token_sha256: str = Field(sa_column=sa.Column(sa.CHAR(64), nullable=False, unique=True))
    scope: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    # A member token has an organization, a metering token none (CHECKs member_has_org and
    # metering_has_no_org, migrations 0002 and 0012); an admin's, if any, changes nothing.
    organization_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("organizations.id", ondelete="CASCADE")),
    )
    name: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )
    revoked_at: datetime | None = Field(default=None, sa_column=_ts())


class InvoiceNumberSequence(SQLModel, table=True):
    """One counter row per organization: its row lock serialises numbering, and a rolled-back
    finalize rolls the counter back with it, so numbers have no gaps."""

    __tablename__ = "invoice_number_sequences"

    organization_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
        )
    )
    last_number: int = Field(default=0, sa_column=_bigint(default=0))


class Invoice(SQLModel, table=True):
    __tablename__ = "invoices"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    public_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    organization_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("organizations.id"), nullable=False)
    )
    number: str | None = Field(default=None, sa_column=sa.Column(sa.Text, unique=True))
    status: str = Field(default=InvoiceStatus.DRAFT, sa_column=sa.Column(sa.Text, nullable=False))
    currency: str = Field(sa_column=sa.Column(sa.CHAR(3), nullable=False))
    period_start: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    period_end: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    due_date: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    finalized_at: datetime | None = Field(default=None, sa_column=_ts())
    paid_at: datetime | None = Field(default=None, sa_column=_ts())
    voided_at: datetime | None = Field(default=None, sa_column=_ts())
    marked_uncollectible_at: datetime | None = Field(default=None, sa_column=_ts())
    subtotal_cents: int = Field(default=0, sa_column=_bigint(default=0))
    total_cents: int = Field(default=0, sa_column=_bigint(default=0))
    line_item_count: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    stripe_invoice_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, unique=True))
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )
    updated_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class InvoiceItem(SQLModel, table=True):
    __tablename__ = "invoice_items"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    public_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    invoice_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False
        )
    )
    kind: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    description: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    product: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    app: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    region: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    unit: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    quantity: Decimal = Field(sa_column=sa.Column(sa.Numeric(20, 9), nullable=False))
    unit_price: Decimal = Field(sa_column=sa.Column(sa.Numeric(24, 12), nullable=False))
    amount_cents: int = Field(sa_column=_bigint())
    period_start: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    period_end: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    metadata_: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=sa.Column(
            "metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
    )
    stripe_line_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    # Set only on usage aggregates (the ingest's upsert target); NULL on hand-written lines.
    price_id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("prices.id"))
    )
    # Earliest and latest occurred_at of a usage aggregate's events (the projection's run rate).
    first_usage_at: datetime | None = Field(default=None, sa_column=_ts())
    last_usage_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class InvoiceSync(SQLModel, table=True):
    """The outbox row: one per finalized invoice, written in the finalize transaction."""

    __tablename__ = "invoice_sync"

    invoice_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True
        )
    )
    state: str = Field(default=SyncStatus.PENDING, sa_column=sa.Column(sa.Text, nullable=False))
    attempts: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    next_attempt_at: datetime | None = Field(default=None, sa_column=_ts())
    locked_until: datetime | None = Field(default=None, sa_column=_ts())
    lease_owner: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    last_attempt_at: datetime | None = Field(default=None, sa_column=_ts())
    # The first failed attempt since the last success or reset: the retry horizon counts from
    # here (SYNC_RETRY_HORIZON). NULL while nothing has failed.
    retrying_since: datetime | None = Field(default=None, sa_column=_ts())
    synced_at: datetime | None = Field(default=None, sa_column=_ts())
    # Bumped by every request that changes what the sync must do (void, resync); a worker that
    # finishes on an older revision leaves the row due instead of SYNCED.
    revision: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    verify_requested: bool = Field(
        default=False, sa_column=sa.Column(sa.Boolean, nullable=False, server_default=sa.false())
    )
    last_error_class: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    last_error_code: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    last_error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    last_error_http_status: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    last_error_request_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )
    updated_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )
    # The due date sent to Stripe, fixed by the first create (never a past date; NOTES.md).
    remote_due_date: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    # Step -> idempotency key generation, bumped when Stripe replays a saved 500 for a key.
    key_generations: dict[str, int] = Field(
        default_factory=dict,
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    # Remote invoices given up by `resyncInvoice(recreate: true)`: never adopted again.
    replaced_stripe_invoice_ids: list[str] = Field(
        default_factory=list,
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    # Stripe's page where the customer pays, and its PDF: stored when the sync finalizes.
    hosted_invoice_url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    invoice_pdf_url: str | None = Field(default=None, sa_column=sa.Column(sa.Text))


class SyncAttempt(SQLModel, table=True):
    __tablename__ = "sync_attempts"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    invoice_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False
        )
    )
    attempt: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    step: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    outcome: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    started_at: datetime = Field(sa_column=_ts(nullable=False))
    duration_ms: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    error_class: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    error_code: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    http_status: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    request_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    calls: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )


class InvoiceMonthlyRollup(SQLModel, table=True):
    """Additive monthly counters. scope_id 0 is the platform (sharded); any other value is an
    organization id (shard 0 only: an organization's finalizes already queue on its numbering
    lock, so sharding its row would buy nothing)."""

    __tablename__ = "invoice_monthly_rollups"

    scope_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    month: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    currency: str = Field(sa_column=sa.Column(sa.CHAR(3), primary_key=True))
    shard: int = Field(sa_column=sa.Column(sa.SmallInteger, primary_key=True))
    invoice_count: int = Field(default=0, sa_column=_bigint(default=0))
    subtotal_cents: int = Field(default=0, sa_column=_bigint(default=0))
    total_cents: int = Field(default=0, sa_column=_bigint(default=0))
    # Issued credit notes' totals (models/invoices/credit_notes.py); net = total - credited.
    credited_cents: int = Field(default=0, sa_column=_bigint(default=0))


class Price(SQLModel, table=True):
    """One version of a unit price; append-only (a trigger refuses UPDATE and DELETE)."""

    __tablename__ = "prices"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    product: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    unit: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    currency: str = Field(sa_column=sa.Column(sa.CHAR(3), nullable=False))
    unit_price: Decimal = Field(sa_column=sa.Column(sa.Numeric(24, 12), nullable=False))
    effective_from: datetime = Field(sa_column=_ts(nullable=False))
    organization_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("organizations.id")),
    )
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )
    # How people read the product ("Shared CPU") and the unit: "GB-month" for a price per
    # "GB-second", with the factor of stored units per display unit (2,592,000); unit and
    # factor both or neither (models/units.py).
    display_name: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    display_unit: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    display_factor: Decimal | None = Field(default=None, sa_column=sa.Column(sa.Numeric(24, 12)))


class UsageDraft(SQLModel, table=True):
    """Which draft the usage of one organization's period goes to. Kept after finalize: that is
    how late usage learns its period is closed."""

    __tablename__ = "usage_drafts"

    organization_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
        )
    )
    period_start: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    invoice_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger,
            sa.ForeignKey("invoices.id", ondelete="CASCADE"),
            nullable=False,
            unique=True,
        )
    )


class UsageEventId(SQLModel, table=True):
    """An organization's event id, unique forever (usage_events is partitioned by month and
    cannot promise that), with the payload hash that tells a duplicate from a conflict."""

    __tablename__ = "usage_event_ids"

    organization_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organizations.id", ondelete="CASCADE"), primary_key=True
        )
    )
    event_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    payload_sha256: bytes = Field(sa_column=sa.Column(sa.LargeBinary, nullable=False))
    occurred_at: datetime = Field(sa_column=_ts(nullable=False))
    received_at: datetime = Field(sa_column=_ts(nullable=False))


class UsageEvent(SQLModel, table=True):
    """An accepted usage event (append-only, partitioned by month of occurred_at), with the
    price version and the draft it was added to."""

    __tablename__ = "usage_events"

    organization_id: int = Field(sa_column=sa.Column(sa.BigInteger, primary_key=True))
    event_id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    occurred_at: datetime = Field(sa_column=sa.Column(sa.DateTime(timezone=True), primary_key=True))
    period_start: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    product: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    app: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    region: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    quantity: Decimal = Field(sa_column=sa.Column(sa.Numeric(20, 9), nullable=False))
    price_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    invoice_id: int = Field(sa_column=sa.Column(sa.BigInteger, nullable=False))
    metadata_: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=sa.Column(
            "metadata", JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")
        ),
    )
    received_at: datetime = Field(sa_column=_ts(nullable=False))


class UsageAudit(SQLModel, table=True):
    """One use of the audited path around usage_event_ids and usage_events (migration 0008):
    a transaction that writes a row here may update, delete or truncate them; append-only."""

    __tablename__ = "usage_audit"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    at: datetime | None = Field(default=None, sa_column=_ts(nullable=False, server_default=True))
    txid: int | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.BigInteger, nullable=False, index=True, server_default=sa.text("txid_current()")
        ),
    )
    actor: str | None = Field(
        default=None,
        sa_column=sa.Column(sa.Text, nullable=False, server_default=sa.text("current_user")),
    )
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    detail: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )


class PaymentStatus(StrEnum):
    PENDING = "pending"
    FAILED = "failed"
    SUCCEEDED = "succeeded"


class StripeEvent(SQLModel, table=True):
    """A verified Stripe webhook event, stored once by its id before it is acted on."""

    __tablename__ = "stripe_events"

    id: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    type: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    object_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text, index=True))
    # NULL only for a malformed event whose own `created` could not be read.
    created: datetime | None = Field(default=None, sa_column=_ts())
    received_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )
    # models.payments.events.VERDICTS (CHECK verdict_known); `outcome` is the sentence.
    verdict: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    outcome: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    payload: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))

    __table_args__ = (sa.Index("ix_stripe_events_verdict_received_at", "verdict", "received_at"),)


class InvoicePayment(SQLModel, table=True):
    """Where collecting an invoice stands on Stripe, from its webhook events."""

    __tablename__ = "invoice_payments"

    invoice_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True
        )
    )
    status: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    attempt_count: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    last_failure_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    next_attempt_at: datetime | None = Field(default=None, sa_column=_ts())
    # `created` of the newest Stripe event applied: an older one arriving later is ignored.
    as_of: datetime = Field(sa_column=_ts(nullable=False))
    updated_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class Subscription(SQLModel, table=True):
    """A recurring charge (a support plan): one SUBSCRIPTION line per period it overlaps,
    added by the close and priced from `prices` at the period start."""

    __tablename__ = "subscriptions"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    organization_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger,
            sa.ForeignKey("organizations.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    product: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    description: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    quantity: Decimal = Field(sa_column=sa.Column(sa.Numeric(20, 9), nullable=False))
    since: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    until: date | None = Field(default=None, sa_column=sa.Column(sa.Date))
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class BillingRun(SQLModel, table=True):
    """The close of one period: when it started and finished, and what it did so far."""

    __tablename__ = "billing_runs"

    period_start: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    started_at: datetime = Field(sa_column=_ts(nullable=False))
    finished_at: datetime | None = Field(default=None, sa_column=_ts())
    drafts: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    finalized: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    skipped: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    failed: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    updated_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class BillingRunInvoice(SQLModel, table=True):
    """What the close did to one draft: finalized, skipped (no lines) or failed (with why)."""

    __tablename__ = "billing_run_invoices"

    invoice_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("invoices.id", ondelete="CASCADE"), primary_key=True
        )
    )
    period_start: date = Field(sa_column=sa.Column(sa.Date, nullable=False))
    outcome: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    attempts: int = Field(
        default=1, sa_column=sa.Column(sa.Integer, nullable=False, server_default="1")
    )
    error_code: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    error_message: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    at: datetime = Field(sa_column=_ts(nullable=False))


class SpendAlertKind(StrEnum):
    ACTUAL = "actual"  # the draft's total reaches the threshold
    FORECAST = "forecast"  # the projection's low reaches it (models/usage/forecast.py)


class SpendAlert(SQLModel, table=True):
    """'Tell me when this month passes $500': fires once per period into the notification
    outbox. ACTUAL from the ingest transaction that makes the draft cross it; FORECAST from the
    beat task that projects the drafts (models/alerts.py)."""

    __tablename__ = "spend_alerts"
    __table_args__ = (
        sa.UniqueConstraint("organization_id", "currency", "kind", "threshold_cents"),
        sa.CheckConstraint("kind IN ('actual', 'forecast')", name="kind_known"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    organization_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
        )
    )
    currency: str = Field(sa_column=sa.Column(sa.CHAR(3), nullable=False))
    threshold_cents: int = Field(sa_column=_bigint())
    kind: str = Field(
        default=SpendAlertKind.ACTUAL,
        sa_column=sa.Column(sa.Text, nullable=False, server_default=sa.text("'actual'")),
    )
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class SpendAlertFiring(SQLModel, table=True):
    """One alert crossed in one period; the primary key makes it once per period."""

    __tablename__ = "spend_alert_firings"

    alert_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("spend_alerts.id", ondelete="CASCADE"), primary_key=True
        )
    )
    period_start: date = Field(sa_column=sa.Column(sa.Date, primary_key=True))
    invoice_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("invoices.id", ondelete="CASCADE"), nullable=False
        )
    )
    total_cents: int = Field(sa_column=_bigint())
    triggered_at: datetime = Field(sa_column=_ts(nullable=False))


class NotificationOutbox(SQLModel, table=True):
    """Messages for a mailer to send (none is sent here); unsent rows have sent_at NULL."""

    __tablename__ = "notification_outbox"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    organization_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("organizations.id", ondelete="CASCADE"), nullable=False
        )
    )
    kind: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    payload: dict[str, Any] = Field(
        default_factory=dict,
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("'{}'::jsonb")),
    )
    created_at: datetime = Field(sa_column=_ts(nullable=False))
    sent_at: datetime | None = Field(default=None, sa_column=_ts())


class IdempotencyKey(SQLModel, table=True):
    """A mutation sent with `idempotencyKey`: what its first answer referred to, so that a retry
    with the same key replays it (models/idempotency.py)."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (sa.Index("ix_idempotency_keys_created_at", "created_at"),)

    token_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("api_tokens.id", ondelete="CASCADE"), primary_key=True
        )
    )
    key: str = Field(sa_column=sa.Column(sa.Text, primary_key=True))
    operation: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    fingerprint: str = Field(sa_column=sa.Column(sa.CHAR(64), nullable=False))
    outcome: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class CreditNoteStatus(StrEnum):
    ISSUED = "issued"
    VOID = "void"


class CreditNoteReason(StrEnum):
    """Stripe's set of credit note reasons."""

    DUPLICATE = "duplicate"
    FRAUDULENT = "fraudulent"
    ORDER_CHANGE = "order_change"
    PRODUCT_UNSATISFACTORY = "product_unsatisfactory"


class OutageIncident(SQLModel, table=True):
    """One outage credit run (models/invoices/outage_credits.py), once per key."""

    __tablename__ = "outage_incidents"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    key: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    region: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    window_from: datetime = Field(sa_column=_ts(nullable=False))
    window_to: datetime = Field(sa_column=_ts(nullable=False))
    products: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    percent: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    credit_notes: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    draft_lines: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    credited_cents: int = Field(default=0, sa_column=_bigint(default=0))
    summary: list[dict[str, Any]] = Field(
        default_factory=list,
        sa_column=sa.Column(JSONB, nullable=False, server_default=sa.text("'[]'::jsonb")),
    )
    created_by: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class CreditNote(SQLModel, table=True):
    """A correction of a finalized invoice: immutable once issued (triggers), voidable."""

    __tablename__ = "credit_notes"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    public_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    organization_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("organizations.id"), nullable=False)
    )
    invoice_id: int = Field(
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("invoices.id"), nullable=False, index=True)
    )
    number: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    status: str = Field(
        default=CreditNoteStatus.ISSUED, sa_column=sa.Column(sa.Text, nullable=False)
    )
    reason: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    memo: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    currency: str = Field(sa_column=sa.Column(sa.CHAR(3), nullable=False))
    total_cents: int = Field(sa_column=_bigint())
    # The invoice was PAID when this was issued: the total is settled as below (Stripe's rule).
    post_payment: bool = Field(sa_column=sa.Column(sa.Boolean, nullable=False))
    refund_cents: int = Field(default=0, sa_column=_bigint(default=0))
    credit_balance_cents: int = Field(default=0, sa_column=_bigint(default=0))
    out_of_band_cents: int = Field(default=0, sa_column=_bigint(default=0))
    created_by: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    issued_at: datetime = Field(sa_column=_ts(nullable=False))
    voided_at: datetime | None = Field(default=None, sa_column=_ts())
    incident_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("outage_incidents.id")),
    )
    stripe_credit_note_id: str | None = Field(
        default=None, sa_column=sa.Column(sa.Text, unique=True)
    )
    # When Stripe confirmed the void (the sync's void step, or a credit_note.voided event).
    stripe_voided_at: datetime | None = Field(default=None, sa_column=_ts())
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )


class CreditNoteLine(SQLModel, table=True):
    """An amount credited against one invoice line (with the quantity, if given by quantity),
    or a custom amount with its description. Immutable (a trigger)."""

    __tablename__ = "credit_note_lines"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    credit_note_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger, sa.ForeignKey("credit_notes.id"), nullable=False, index=True
        )
    )
    invoice_item_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("invoice_items.id"), index=True),
    )
    description: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    quantity: Decimal | None = Field(default=None, sa_column=sa.Column(sa.Numeric(20, 9)))
    amount_cents: int = Field(sa_column=_bigint())


class WebhookDeliveryState(StrEnum):
    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"  # given up: a day of retries without a 2xx
    CANCELLED = "cancelled"  # its endpoint was deleted first


class WebhookEndpoint(SQLModel, table=True):
    """A URL an admin registered for outbound webhooks, with the event types it wants and the
    secret its deliveries are signed with. Deleted endpoints keep their row (deleted_at)."""

    __tablename__ = "webhook_endpoints"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    public_id: str = Field(sa_column=sa.Column(sa.Text, nullable=False, unique=True))
    url: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    event_types: list[str] = Field(sa_column=sa.Column(ARRAY(sa.Text), nullable=False))
    secret: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    created_at: datetime | None = Field(
        default=None, sa_column=_ts(nullable=False, server_default=True)
    )
    deleted_at: datetime | None = Field(default=None, sa_column=_ts())


class WebhookEvent(SQLModel, table=True):
    """Something that happened, written in the transaction that made it happen; its id is what
    receivers deduplicate on (every attempt of every delivery sends the same one)."""

    __tablename__ = "webhook_events"
    __table_args__ = (sa.Index("ix_webhook_events_created_at", "created_at"),)

    id: str | None = Field(
        default=None,
        sa_column=sa.Column(
            sa.Text,
            primary_key=True,
            server_default=sa.text("'evt_' || replace(gen_random_uuid()::text, '-', '')"),
        ),
    )
    type: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    organization_id: int | None = Field(
        default=None,
        sa_column=sa.Column(sa.BigInteger, sa.ForeignKey("organizations.id", ondelete="CASCADE")),
    )
    object_id: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
    payload: dict[str, Any] = Field(sa_column=sa.Column(JSONB, nullable=False))
    created_at: datetime = Field(sa_column=_ts(nullable=False))


class WebhookDelivery(SQLModel, table=True):
    """One event for one endpoint: the outbox row the sweep claims and the task sends."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "endpoint_id"),
        sa.Index("ix_webhook_deliveries_endpoint_id", "endpoint_id"),
    )

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    event_id: str = Field(
        sa_column=sa.Column(
            sa.Text, sa.ForeignKey("webhook_events.id", ondelete="CASCADE"), nullable=False
        )
    )
    endpoint_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger,
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        )
    )
    state: str = Field(
        default=WebhookDeliveryState.PENDING,
        sa_column=sa.Column(sa.Text, nullable=False, server_default="pending"),
    )
    attempts: int = Field(
        default=0, sa_column=sa.Column(sa.Integer, nullable=False, server_default="0")
    )
    next_attempt_at: datetime = Field(sa_column=_ts(nullable=False))
    locked_until: datetime | None = Field(default=None, sa_column=_ts())
    delivered_at: datetime | None = Field(default=None, sa_column=_ts())
    last_http_status: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    last_error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))


class WebhookDeliveryAttempt(SQLModel, table=True):
    """One HTTP attempt of a delivery: the log `billing webhooks-out list` prints."""

    __tablename__ = "webhook_delivery_attempts"

    id: int | None = Field(
        default=None, sa_column=sa.Column(sa.BigInteger, sa.Identity(), primary_key=True)
    )
    delivery_id: int = Field(
        sa_column=sa.Column(
            sa.BigInteger,
            sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        )
    )
    attempt: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    started_at: datetime = Field(sa_column=_ts(nullable=False))
    duration_ms: int = Field(sa_column=sa.Column(sa.Integer, nullable=False))
    outcome: str = Field(sa_column=sa.Column(sa.Text, nullable=False))
    http_status: int | None = Field(default=None, sa_column=sa.Column(sa.Integer))
    error: str | None = Field(default=None, sa_column=sa.Column(sa.Text))
