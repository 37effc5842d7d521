"""Gap-free invoice numbers per organization (`ACME-0001`)."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.exc import OperationalError
from sqlmodel import Session

from models.errors import Busy

# Long enough for any finalize to finish, short enough that a stuck transaction surfaces as a
# retryable BUSY error instead of piling up requests behind it.
NUMBER_LOCK_TIMEOUT = "5s"

_NEXT_NUMBER = sa.text(
    """
    INSERT INTO invoice_number_sequences AS s (organization_id, last_number)
    VALUES (:org, 1)
    ON CONFLICT (organization_id) DO UPDATE SET last_number = s.last_number + 1
    RETURNING s.last_number
    """
)


def next_invoice_number(session: Session, organization_id: int, prefix: str) -> str:
    """Take the organization's next number. Caller commits.

    The upsert locks the organization's counter row until the caller's transaction ends, so
    concurrent finalizes of one organization queue here, and a rollback returns the number:
    no gaps, no duplicates. Uses the primary key of invoice_number_sequences.
    """
    if not session.in_transaction():
        raise RuntimeError("next_invoice_number must run inside the finalize transaction")
    session.execute(sa.text(f"SET LOCAL lock_timeout = '{NUMBER_LOCK_TIMEOUT}'"))
    try:
        number = session.execute(_NEXT_NUMBER, {"org": organization_id}).scalar_one()
    except OperationalError as e:
        if getattr(e.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise Busy("another invoice of this organization is being finalized; retry") from e
        raise
    session.execute(sa.text("SET LOCAL lock_timeout = 0"))
    return format_number(prefix, number)


def format_number(prefix: str, number: int) -> str:
    return f"{prefix}-{number:04d}"
