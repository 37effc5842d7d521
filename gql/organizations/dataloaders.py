"""Organization DataLoaders (one instance per request and kind, from `Context.loader`)."""

from __future__ import annotations

from sqlmodel import col, select

from gql.core.dataloaders import SessionLoader
from models import tables


class OrganizationByIdLoader(SessionLoader[int, tables.Organization | None]):
    """Organizations by id, for invoices that show theirs: one query per page, not per row.
    Unscoped: callers reach it only from an invoice the viewer may already see."""

    def batch_load(self, keys: list[int]) -> list[tables.Organization | None]:
        rows = self.session.exec(
            select(tables.Organization).where(col(tables.Organization.id).in_(keys))
        ).all()
        by_id = {r.id: r for r in rows}
        return [by_id.get(i) for i in keys]
