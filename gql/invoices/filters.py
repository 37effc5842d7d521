"""Invoice list filters, turned into SQL conditions that keep the keyset indexes usable."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

import sqlalchemy as sa
import strawberry
from sqlmodel import col, select

from gql.invoices.enums import InvoiceStatus, SyncStatus
from models import tables
from models.money import normalize_currency


@strawberry.input(description="Narrow an invoice list. All given conditions must hold.")
class InvoiceFilter:
    status: list[InvoiceStatus] | None = strawberry.field(
        default=None, description="Any of these statuses."
    )
    currency: str | None = strawberry.field(default=None, description="ISO 4217 code, any case.")
    period_from: date | None = strawberry.field(
        default=None, description="Billing periods starting on or after this day."
    )
    period_to: date | None = strawberry.field(
        default=None, description="Billing periods starting before this day (exclusive)."
    )
    sync_status: list[SyncStatus] | None = strawberry.field(
        default=None, description="Any of these sync states (NOT_REQUIRED means drafts)."
    )
    organization_slug: str | None = strawberry.field(
        default=None, description="Admins: one organization. Members see only their own anyway."
    )


def conditions(f: InvoiceFilter | None) -> list[Any]:
    """SQL conditions on `invoices` for a filter. Currency errors surface as NOT_FOUND-free
    validation: an unknown currency raises the domain's UnknownCurrency."""
    if f is None:
        return []
    inv = tables.Invoice
    out: list[Any] = []
    if f.status:
        out.append(col(inv.status).in_([s.value for s in f.status]))
    if f.currency:
        out.append(col(inv.currency) == normalize_currency(f.currency))
    if f.period_from:
        out.append(col(inv.period_start) >= f.period_from)
    if f.period_to:
        out.append(col(inv.period_start) < f.period_to)
    if f.sync_status:
        states = [s.value for s in f.sync_status if s != SyncStatus.NOT_REQUIRED]
        synced = select(tables.InvoiceSync.invoice_id).where(
            col(tables.InvoiceSync.state).in_(states)
        )
        either: list[sa.ColumnElement[bool]] = [col(inv.id).in_(synced)] if states else []
        if SyncStatus.NOT_REQUIRED in f.sync_status:
            either.append(col(inv.status) == InvoiceStatus.DRAFT)
        out.append(sa.or_(*either))
    return out


# The `filter` argument of both invoice lists (root and Organization.invoices).
Filter = Annotated[InvoiceFilter | None, strawberry.argument(description="Narrow the list.")]
