"""The sync outbox: one `invoice_sync` row per finalized invoice, changed only here and by the
sync worker. Writing the row in the same transaction as the status change is what makes the sync
impossible to lose: a crash after commit leaves a due row that the sweeper will find.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.errors import InvalidTransition
from models.tables import SyncStatus


def write_pending(
    session: Session, invoice: tables.Invoice, *, now: datetime
) -> tables.InvoiceSync:
    """Create the outbox row of a just-finalized invoice, due now. Caller commits."""
    assert invoice.id is not None
    row = tables.InvoiceSync(invoice_id=invoice.id, state=SyncStatus.PENDING, next_attempt_at=now)
    session.add(row)
    return row


def get(
    session: Session, invoice_id: int, *, for_update: bool = False
) -> tables.InvoiceSync | None:
    stmt = select(tables.InvoiceSync).where(tables.InvoiceSync.invoice_id == invoice_id)
    if for_update:
        stmt = stmt.with_for_update().execution_options(populate_existing=True)
    return session.exec(stmt).first()


def make_due(row: tables.InvoiceSync, *, now: datetime, reset_attempts: bool) -> None:
    """Ask for another pass of the sync as soon as possible. Bumps the revision, so a worker in
    the middle of an older pass does not mark the row SYNCED when it ends."""
    if row.state != SyncStatus.SYNCING:
        row.state = SyncStatus.PENDING
    row.next_attempt_at = now
    row.revision += 1
    row.updated_at = now
    if reset_attempts:
        row.attempts = 0
        row.last_error_class = None
        row.last_error_code = None
        row.last_error_message = None
        row.last_error_http_status = None
        row.last_error_request_id = None


def request_resync(
    session: Session, invoice: tables.Invoice, *, now: datetime
) -> tables.InvoiceSync:
    """Force a resync. FAILED: back to PENDING with attempts reset. SYNCED: re-verify against
    Stripe and repair. Already due or running: asks for one more pass. Caller commits.

    Never creates anything remote by itself: the worker looks the invoice up on Stripe before
    creating, so two resyncs at once still give one remote invoice.
    """
    assert invoice.id is not None
    row = get(session, invoice.id, for_update=True)
    if row is None:
        raise InvalidTransition(
            "draft invoices are not synced to Stripe; finalize the invoice first",
            field=("invoiceId",),
        )
    row.verify_requested = row.verify_requested or row.state == SyncStatus.SYNCED
    make_due(row, now=now, reset_attempts=True)
    return row


def retry_failed(session: Session, *, organization_id: int | None, now: datetime) -> int:
    """Re-queue every FAILED invoice of one organization or of the platform. Caller commits."""
    stmt = (
        sa.update(tables.InvoiceSync)
        .where(col(tables.InvoiceSync.state) == SyncStatus.FAILED)
        .values(
            state=SyncStatus.PENDING,
            next_attempt_at=now,
            attempts=0,
            revision=col(tables.InvoiceSync.revision) + 1,
            last_error_class=None,
            last_error_code=None,
            last_error_message=None,
            last_error_http_status=None,
            last_error_request_id=None,
            updated_at=now,
        )
    )
    if organization_id is not None:
        stmt = stmt.where(
            col(tables.InvoiceSync.invoice_id).in_(
                select(tables.Invoice.id).where(tables.Invoice.organization_id == organization_id)
            )
        )
    result: sa.CursorResult[tuple[()]] = session.execute(stmt)  # type: ignore[assignment]
    return int(result.rowcount)
