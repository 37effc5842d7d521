"""The base of every DataLoader: bound to the request's session, one instance per kind and request.

Loaders are created by `Context.loader(Kind)` on first use, never at module level: a loader
caches, and a cache shared across requests would serve one viewer's rows to another and go
stale. Each domain package defines its own `XByYLoader` subclasses in its `dataloaders.py`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeVar

from sqlmodel import Session
from strawberry.dataloader import DataLoader

K = TypeVar("K")
V = TypeVar("V")


class SessionLoader(DataLoader[K, V]):
    """Batches `load(key)` calls of one request into one `batch_load(keys)`."""

    def __init__(self, session: Session) -> None:
        super().__init__(load_fn=self.batch_load)
        self.session = session

    async def batch_load(self, keys: list[K]) -> Sequence[V]:
        raise NotImplementedError
