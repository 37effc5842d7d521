"""Gap-free invoice numbers per organization (`ACME-0001`)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

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


# The same upsert for many organizations at once, `n` numbers each, in organization order (the
# rows are locked in primary-key order, so two of these never wait on each other in a cycle).
_NEXT_NUMBERS = sa.text(
    """
    INSERT INTO invoice_number_sequences AS s (organization_id, last_number)
    SELECT org, n FROM unnest(CAST(:orgs AS bigint[]), CAST(:ns AS bigint[])) AS w(org, n)
    ORDER BY org
    ON CONFLICT (organization_id) DO UPDATE SET last_number = s.last_number + EXCLUDED.last_number
    RETURNING s.organization_id, s.last_number
    """
)


def next_invoice_number(session: Session, organization_id: int, prefix: str) -> str:
    """Take the organization's next number. Caller commits.

    The upsert locks the organization's counter row until the caller's transaction ends, so
    concurrent finalizes of one organization queue here, and a rollback returns the number:
    no gaps, no duplicates. Uses the primary key of invoice_number_sequences.
    """
    return next_invoice_numbers(session, [(organization_id, prefix)])[0]


def next_invoice_numbers(session: Session, wanted: Sequence[tuple[int, str]]) -> list[str]:
    """The next numbers for a list of (organization id, prefix), one per invoice to finalize,
    in the list's order (an organization listed twice gets two consecutive numbers, the first
    for its first place). One upsert for the whole list, with the locking and rollback
    behaviour of `next_invoice_number`. Caller commits. Raises Busy."""
    if not session.in_transaction():
        raise RuntimeError("invoice numbers must be taken inside the finalize transaction")
    if not wanted:
        return []
    counts = Counter(org for org, _ in wanted)
    orgs = sorted(counts)
    session.execute(sa.text(f"SET LOCAL lock_timeout = '{NUMBER_LOCK_TIMEOUT}'"))
    try:
        if len(orgs) == 1 and counts[orgs[0]] == 1:
            last = {orgs[0]: session.execute(_NEXT_NUMBER, {"org": orgs[0]}).scalar_one()}
        else:
            rows = session.execute(_NEXT_NUMBERS, {"orgs": orgs, "ns": [counts[o] for o in orgs]})
            last = {int(r.organization_id): int(r.last_number) for r in rows}
    except OperationalError as e:
        if getattr(e.orig, "sqlstate", None) == "55P03":  # lock_not_available
            raise Busy("another invoice of this organization is being finalized; retry") from e
        raise
    session.execute(sa.text("SET LOCAL lock_timeout = 0"))
    # Hand each organization's block [last - n + 1, last] out in list order.
    given = {org: last[org] - counts[org] for org in orgs}
    numbers = []
    for org, prefix in wanted:
        given[org] += 1
        numbers.append(format_number(prefix, given[org]))
    return numbers


def format_number(prefix: str, number: int) -> str:
    return f"{prefix}-{number:04d}"
