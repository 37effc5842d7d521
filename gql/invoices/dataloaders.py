"""Invoice DataLoaders: whatever the page size, each kind of child row costs one query.

One instance per request and kind, from `Context.loader` (see gql/core/dataloaders.py).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from gql.core.dataloaders import SessionLoader
from models import tables

# Key of a page of children: (parent id, rows wanted + 1 to learn whether there are more,
# after this id, before this id, from the back).
PageKey = tuple[int, int, int | None, int | None, bool]


def _line_items_pages(session: Session, keys: Sequence[PageKey]) -> list[list[Any]]:
    """A page of line items between two cursors for many invoices, in one query per shape.

    A window function numbers each invoice's lines in id order (descending for a page from the
    back) and keeps the first N; the scan uses ix_invoice_items_invoice_id_id either way. Pages
    of one request nearly always share a shape, so this is one query. Rows come back in the
    order read (the caller turns a backward page around) as plain result rows, not ORM objects:
    they are read-only here, and skipping the identity map halves the cost of a 200-line page.
    """
    by_shape: dict[tuple[int, int | None, int | None, bool], list[int]] = defaultdict(list)
    for invoice_id, limit, after, before, backward in keys:
        by_shape[(limit, after, before, backward)].append(invoice_id)
    found: dict[PageKey, list[Any]] = defaultdict(list)
    table = tables.InvoiceItem.__table__  # type: ignore[attr-defined]
    for (limit, after, before, backward), invoice_ids in by_shape.items():
        order = table.c.id.desc() if backward else table.c.id
        ranked = sa.select(
            *[c.label("metadata_") if c.name == "metadata" else c for c in table.c],
            sa.func.row_number().over(partition_by=table.c.invoice_id, order_by=order).label("rn"),
        ).where(table.c.invoice_id.in_(invoice_ids))
        if after is not None:
            ranked = ranked.where(table.c.id > after)
        if before is not None:
            ranked = ranked.where(table.c.id < before)
        sub = ranked.subquery()
        # The display unit of the line's price version, in the same query (no extra round
        # trip): usage lines name it in price_id, recurring lines in metadata.price_id.
        price = tables.Price.__table__.alias("p")  # type: ignore[attr-defined]
        price_id = sa.func.coalesce(
            sub.c.price_id, sa.cast(sub.c.metadata_["price_id"].astext, sa.BigInteger)
        )
        rows = session.execute(
            sa.select(sub, price.c.display_unit, price.c.display_factor)
            .select_from(sub.outerjoin(price, price.c.id == price_id))
            .where(sub.c.rn <= limit)
            .order_by(sub.c.invoice_id, sub.c.rn)
        ).all()
        for row in rows:
            found[(row.invoice_id, limit, after, before, backward)].append(row)
    return [found.get(k, []) for k in keys]


def _history(session: Session, keys: Sequence[tuple[int, int]]) -> list[list[tables.SyncAttempt]]:
    """The last N sync attempts of many invoices, newest first, in one query."""
    limit = max(n for _, n in keys)
    attempt = tables.SyncAttempt
    ranked = (
        select(
            attempt,
            sa.func.row_number()
            .over(partition_by=col(attempt.invoice_id), order_by=col(attempt.id).desc())
            .label("rn"),
        )
        .where(col(attempt.invoice_id).in_({k for k, _ in keys}))
        .subquery()
    )
    aliased = sa.orm.aliased(attempt, ranked)
    rows = session.exec(
        select(aliased)
        .where(ranked.c.rn <= limit)
        .order_by(ranked.c.invoice_id, ranked.c.id.desc())
    ).all()
    grouped: dict[int, list[tables.SyncAttempt]] = defaultdict(list)
    for row in rows:
        grouped[row.invoice_id].append(row)
    return [grouped[i][:n] for i, n in keys]


class LineItemsByInvoiceIdLoader(SessionLoader[PageKey, list[Any]]):
    """A page of line items per invoice, as result rows with InvoiceItem's attribute names."""

    def batch_load(self, keys: list[PageKey]) -> list[list[Any]]:
        return _line_items_pages(self.session, keys)


class SyncStateByInvoiceIdLoader(SessionLoader[int, Any]):
    """The outbox row of each invoice (a result row with InvoiceSync's attribute names: read
    only, so no ORM object); None for drafts, which have none."""

    def batch_load(self, keys: list[int]) -> list[Any]:
        table = tables.InvoiceSync.__table__  # type: ignore[attr-defined]
        rows = self.session.execute(sa.select(table).where(table.c.invoice_id.in_(keys))).all()
        by_id = {r.invoice_id: r for r in rows}
        return [by_id.get(i) for i in keys]


class PaymentByInvoiceIdLoader(SessionLoader[int, tables.InvoicePayment | None]):
    """Where collecting each invoice stands, from its webhooks; None before Stripe reports."""

    def batch_load(self, keys: list[int]) -> list[tables.InvoicePayment | None]:
        rows = self.session.exec(
            select(tables.InvoicePayment).where(col(tables.InvoicePayment.invoice_id).in_(keys))
        ).all()
        by_id = {r.invoice_id: r for r in rows}
        return [by_id.get(i) for i in keys]


class SyncAttemptsByInvoiceIdLoader(SessionLoader[tuple[int, int], list[tables.SyncAttempt]]):
    """The last N sync attempts per (invoice id, N), newest first."""

    def batch_load(self, keys: list[tuple[int, int]]) -> list[list[tables.SyncAttempt]]:
        return _history(self.session, keys)
