"""Where an invoice stands with Stripe: its sync state, attempt history and per-organization health."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from typing import Annotated, Any

import strawberry

from gql.core.context import Info
from gql.invoices.dataloaders import SyncAttemptsByInvoiceIdLoader
from gql.invoices.enums import SyncStatus
from models import tables

HISTORY_MAX = 50


@strawberry.type(description="Why the last sync attempt failed, as Stripe or the network said.")
class SyncError:
    error_class: str | None = strawberry.field(
        description="Error class, such as InvalidRequestError, APIConnectionError or MISMATCH."
    )
    code: str | None = strawberry.field(
        description="Stripe's error code, such as resource_missing."
    )
    message: str | None = strawberry.field(description="Stripe's (or our) message.")
    http_status: int | None = strawberry.field(description="HTTP status of Stripe's answer.")
    request_id: str | None = strawberry.field(description="Stripe request id, for Stripe support.")


@strawberry.type(description="One step of one sync attempt.")
class SyncAttempt:
    row: strawberry.Private[tables.SyncAttempt]

    @strawberry.field(description="When the step started.")
    def started_at(self) -> datetime:
        return self.row.started_at

    @strawberry.field(description="Attempt number the step belonged to.")
    def attempt(self) -> int:
        return self.row.attempt

    @strawberry.field(description="Step: customer, create, lines, finalize, verify, void...")
    def step(self) -> str:
        return self.row.step

    @strawberry.field(description="How the step ended: ok, retry, failed or paused.")
    def outcome(self) -> str:
        return self.row.outcome

    @strawberry.field(description="Error class, if the step failed.")
    def error_class(self) -> str | None:
        return self.row.error_class

    @strawberry.field(description="Stripe's error code, if any.")
    def error_code(self) -> str | None:
        return self.row.error_code

    @strawberry.field(description="Error message, if any.")
    def error_message(self) -> str | None:
        return self.row.error_message

    @strawberry.field(description="HTTP status of Stripe's answer, if any.")
    def http_status(self) -> int | None:
        return self.row.http_status

    @strawberry.field(description="Stripe request id, if any.")
    def request_id(self) -> str | None:
        return self.row.request_id

    @strawberry.field(description="Duration of the step in milliseconds.")
    def duration_ms(self) -> int:
        return self.row.duration_ms


@strawberry.type(description="Where an invoice stands with Stripe.")
class SyncState:
    invoice_id: strawberry.Private[int]
    # The invoice ids of the page it came in: what `history` batches.
    siblings: strawberry.Private[Sequence[int]]
    status: SyncStatus = strawberry.field(
        description="NOT_REQUIRED for drafts; then PENDING, SYNCING, SYNCED, RETRYING or FAILED."
    )
    attempts: int = strawberry.field(
        description="Attempts since the last reset (a forced resync resets them)."
    )
    last_attempt_at: datetime | None = strawberry.field(
        description="When the last attempt started."
    )
    next_attempt_at: datetime | None = strawberry.field(
        description="When the next attempt is due (PENDING and RETRYING only)."
    )
    synced_at: datetime | None = strawberry.field(
        description="When the invoice was last confirmed identical on Stripe."
    )
    last_error: SyncError | None = strawberry.field(
        description="The last error, while the invoice is RETRYING or FAILED."
    )
    remote_due_date: date | None = strawberry.field(
        default=None,
        description="Due date sent to Stripe: dueDate, or sync day + 14 days if synced late.",
    )

    @classmethod
    def from_row(cls, invoice_id: int, r: Any, siblings: Sequence[int] = ()) -> SyncState:
        """From an InvoiceSync or a result row with its attribute names; None for drafts."""
        if r is None:
            return cls(
                invoice_id=invoice_id,
                siblings=siblings,
                status=SyncStatus.NOT_REQUIRED,
                attempts=0,
                last_attempt_at=None,
                next_attempt_at=None,
                synced_at=None,
                last_error=None,
            )
        error = None
        if r.state in ("retrying", "failed") and (r.last_error_class or r.last_error_message):
            error = SyncError(
                error_class=r.last_error_class,
                code=r.last_error_code,
                message=r.last_error_message,
                http_status=r.last_error_http_status,
                request_id=r.last_error_request_id,
            )
        return cls(
            invoice_id=invoice_id,
            siblings=siblings,
            status=SyncStatus(r.state),
            attempts=r.attempts,
            last_attempt_at=r.last_attempt_at,
            next_attempt_at=r.next_attempt_at if r.state in ("pending", "retrying") else None,
            synced_at=r.synced_at,
            last_error=error,
            remote_due_date=r.remote_due_date,
        )

    @strawberry.field(
        description=f"The most recent attempt steps, newest first (at most {HISTORY_MAX})."
    )
    def history(
        self,
        info: Info,
        last: Annotated[
            int, strawberry.argument(description="How many of the newest attempt steps to answer.")
        ] = 10,
    ) -> list[SyncAttempt]:
        n = max(0, min(last, HISTORY_MAX))
        rows = info.context.loader(SyncAttemptsByInvoiceIdLoader).load(
            (self.invoice_id, n), [(i, n) for i in self.siblings]
        )
        return [SyncAttempt(row=r) for r in rows]


@strawberry.type(description="How many of an organization's invoices are in each sync state.")
class SyncHealth:
    not_required: int = strawberry.field(description="Drafts.")
    pending: int = strawberry.field(description="Waiting for a worker.")
    syncing: int = strawberry.field(description="Held by a worker now.")
    synced: int = strawberry.field(description="On Stripe and verified.")
    retrying: int = strawberry.field(description="Waiting to retry after a transient error.")
    failed: int = strawberry.field(description="Stopped; an operator should look.")
    oldest_unsynced_since: datetime | None = strawberry.field(
        description="Finalization time of the oldest invoice not yet synced, if any."
    )
