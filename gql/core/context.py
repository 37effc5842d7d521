"""The typed per-request context: one database session, the viewer, fresh DataLoaders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from sqlmodel import Session, select
from strawberry.types import Info as StrawberryInfo

from gql.core.errors import unauthenticated
from models import tables
from models.errors import NotFound
from models.tables import TokenScope

if TYPE_CHECKING:
    from gql.invoices.dataloaders import Loaders


@dataclass(frozen=True)
class Viewer:
    """Who is calling: a member of one organization, or a platform admin."""

    token_id: int
    scope: TokenScope
    organization_id: int | None

    @property
    def is_admin(self) -> bool:
        return self.scope == TokenScope.ADMIN

    def can_see(self, organization_id: int) -> bool:
        return self.is_admin or self.organization_id == organization_id


@dataclass
class Context:
    session: Session
    viewer_or_none: Viewer | None
    loaders: Loaders
    enqueue_sync: Callable[[int], None]
    rollup_shards: int
    request_id: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))

    @property
    def viewer(self) -> Viewer:
        if self.viewer_or_none is None:
            raise unauthenticated()
        return self.viewer_or_none

    def now(self) -> datetime:
        return self.clock()

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back on any exception.

        The request's earlier reads (the token lookup, loaders) ran in an implicit read-only
        transaction; it is ended first so the write sees fresh rows and holds its locks briefly.
        """
        if self.session.in_transaction():
            self.session.rollback()
        with self.session.begin():
            yield self.session
        self.loaders.clear()

    def invoice_for_viewer(self, ref: str, *, for_update: bool = False) -> tables.Invoice:
        """An invoice by public id or number, scoped to what the viewer may see.

        Another organization's invoice is NOT_FOUND, exactly like a missing one: the scoped
        lookup cannot tell them apart, so it cannot leak that the invoice exists.
        """
        # Numbers are stored upper-case (ACME-0007), so `acme-0007` is the same invoice; the
        # unique index on `number` still serves the lookup.
        by_number = "_" not in ref
        column = tables.Invoice.number if by_number else tables.Invoice.public_id
        stmt = select(tables.Invoice).where(column == (ref.upper() if by_number else ref))
        if not self.viewer.is_admin:
            stmt = stmt.where(tables.Invoice.organization_id == self.viewer.organization_id)
        invoice = self.session.exec(stmt).first()
        if invoice is None:
            raise NotFound(f"no invoice {ref!r}", field=("invoiceId",))
        return invoice

    def organization_for_viewer(self, slug: str) -> tables.Organization:
        org = self.session.exec(
            select(tables.Organization).where(tables.Organization.slug == slug)
        ).first()
        if org is None or org.id is None or not self.viewer.can_see(org.id):
            raise NotFound(f"no organization {slug!r}", field=("organizationSlug",))
        return org


Info = StrawberryInfo[Context, None]
