"""Storing Stripe's ids on our rows, each as soon as it is known, in the caller's short
transaction. Conditional updates: an id, once stored, is never overwritten, so two workers (or a
resumed attempt) can never swap one remote object for another.

The triggers allow these writes on finalized invoices: `invoices.stripe_invoice_id` is not in
the immutable list, and `invoice_items.stripe_line_id` is the one column that may change.
"""

from __future__ import annotations

from collections.abc import Mapping

import sqlalchemy as sa
from sqlmodel import Session

from sync.errors import Mismatch


def store_customer_id(session: Session, organization_id: int, customer_id: str) -> str:
    """The organization's Stripe customer: ours if it had none yet, else the one stored first."""
    stored = session.execute(
        sa.text(
            """
            UPDATE organizations SET stripe_customer_id = coalesce(stripe_customer_id, :c)
            WHERE id = :id
            RETURNING stripe_customer_id
            """
        ),
        {"c": customer_id, "id": organization_id},
    ).scalar_one()
    return str(stored)


def store_invoice_id(session: Session, invoice_id: int, remote_id: str) -> None:
    """Record the Stripe invoice. A different id already stored means two remote invoices for
    one of ours: that must stop the sync and reach a person, never be papered over."""
    stored = session.execute(
        sa.text(
            """
            UPDATE invoices SET stripe_invoice_id = coalesce(stripe_invoice_id, :r)
            WHERE id = :id
            RETURNING stripe_invoice_id
            """
        ),
        {"r": remote_id, "id": invoice_id},
    ).scalar_one()
    if stored != remote_id:
        raise Mismatch(
            f"Stripe invoice {remote_id} carries this invoice's id, but {stored} is already "
            "recorded for it: two remote invoices; void the extra one on Stripe, then resync"
        )


def store_links(
    session: Session, invoice_id: int, *, hosted_invoice_url: str | None, pdf_url: str | None
) -> None:
    """Stripe's hosted payment page and PDF of the invoice (on its sync row; the invoice row is
    guarded once finalized). A link Stripe did not send leaves the stored one as it is."""
    if hosted_invoice_url is None and pdf_url is None:
        return
    session.execute(
        sa.text(
            """
            UPDATE invoice_sync SET hosted_invoice_url = coalesce(:h, hosted_invoice_url),
                invoice_pdf_url = coalesce(:p, invoice_pdf_url)
            WHERE invoice_id = :id
              AND (hosted_invoice_url IS DISTINCT FROM coalesce(:h, hosted_invoice_url)
                   OR invoice_pdf_url IS DISTINCT FROM coalesce(:p, invoice_pdf_url))
            """
        ),
        {"h": hosted_invoice_url, "p": pdf_url, "id": invoice_id},
    )


def store_line_ids(session: Session, invoice_id: int, line_ids: Mapping[str, str]) -> int:
    """Stripe line ids by our line item public id (ungrouped lines only: a grouped line stands
    for many items). Returns how many rows changed."""
    if not line_ids:
        return 0
    result = session.execute(
        sa.text(
            """
            UPDATE invoice_items AS i SET stripe_line_id = v.remote
            FROM unnest(CAST(:pids AS text[]), CAST(:remotes AS text[])) AS v(pid, remote)
            WHERE i.invoice_id = :inv AND i.public_id = v.pid
              AND i.stripe_line_id IS DISTINCT FROM v.remote
            """
        ),
        {"pids": list(line_ids), "remotes": list(line_ids.values()), "inv": invoice_id},
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


def forget_customer_id(session: Session, organization_id: int, customer_id: str) -> None:
    """Drop a Stripe customer id that Stripe no longer knows, if it is still the stored one."""
    session.execute(
        sa.text(
            "UPDATE organizations SET stripe_customer_id = NULL"
            " WHERE id = :id AND stripe_customer_id = :c"
        ),
        {"id": organization_id, "c": customer_id},
    )
