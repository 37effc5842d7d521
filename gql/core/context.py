"""The typed per-request context: one database session, the viewer, fresh DataLoaders."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlmodel import Session
from strawberry.types import Info as StrawberryInfo

from gql.core.dataloaders import SessionLoader
from gql.core.permissions import Viewer, require_viewer

L = TypeVar("L", bound=SessionLoader[Any, Any])


@dataclass
class KeyedWrite:
    """A mutation run under an idempotency key (gql/core/idempotency.py): one transaction that
    the mutation's own `transaction()` block joins."""

    wrote: bool = False  # the mutation's transaction block completed
    commit: bool = False  # decided by the caller once the outcome is recorded


@dataclass
class Context:
    session: Session
    viewer_or_none: Viewer | None
    enqueue_sync: Callable[[int], None]
    rollup_shards: int
    request_id: str
    clock: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))
    loaders: dict[type[SessionLoader[Any, Any]], SessionLoader[Any, Any]] = field(
        default_factory=dict
    )
    keyed: KeyedWrite | None = None

    @property
    def viewer(self) -> Viewer:
        return require_viewer(self)

    def now(self) -> datetime:
        return self.clock()

    def loader(self, kind: type[L]) -> L:
        """This request's loader of that kind, created on first use."""
        found = self.loaders.get(kind)
        if found is None:
            found = self.loaders[kind] = kind(self.session)
        assert isinstance(found, kind)
        return found

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """One write transaction: committed when the block ends, rolled back on any exception.

        The request's earlier reads (the token lookup, loaders) ran in an implicit read-only
        transaction; it is ended first so the write sees fresh rows and holds its locks briefly.
        """
        if self.keyed is not None:
            yield self.session  # committed (or not) by keyed_write, with the key's row
            self.keyed.wrote = True
        else:
            if self.session.in_transaction():
                self.session.rollback()
            with self.session.begin():
                yield self.session
        # Loaders cache rows read before the write; the answer must show the rows after it.
        for loader in self.loaders.values():
            loader.clear_all()

    @contextmanager
    def keyed_write(self) -> Iterator[KeyedWrite]:
        """One transaction around a whole mutation: the idempotency key's claim, the mutation's
        writes and the recorded outcome commit together, or none of them does."""
        if self.session.in_transaction():
            self.session.rollback()
        keyed = self.keyed = KeyedWrite()
        self.session.begin()
        try:
            yield keyed
        except BaseException:
            self.session.rollback()
            raise
        else:
            if keyed.commit:
                self.session.commit()
            else:
                self.session.rollback()
        finally:
            self.keyed = None


Info = StrawberryInfo[Context, None]
