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
from models.unit_of_work import UnitOfWork

L = TypeVar("L", bound=SessionLoader[Any, Any])


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
    unit: UnitOfWork = field(init=False)

    def __post_init__(self) -> None:
        self.unit = UnitOfWork(self.session)

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
        """One write transaction (this request's unit of work): committed when the outermost
        block ends, rolled back on any exception; inside `unit.enclosing()` (an idempotency
        key's claim and record) the block joins that transaction."""
        with self.unit as session:
            yield session
        # Loaders cache rows read before the write; the answer must show the rows after it.
        for loader in self.loaders.values():
            loader.clear_all()

    def sync_after_commit(self, invoice_id: int) -> None:
        """Queue the Stripe sync of `invoice_id` once this request's write has committed; the
        sweeper covers an enqueue lost after that."""
        self.unit.after_commit(lambda: self.enqueue_sync(invoice_id))


Info = StrawberryInfo[Context, None]
