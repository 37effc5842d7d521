"""The base of every loader: bound to the request's session, one instance per kind and request.

Sibling batching, synchronously: `load(key, siblings)` answers `key` and, in the same single
`batch_load`, every sibling key not loaded yet. A parent that builds a list of children (a page
of invoices) hands each child the keys of its siblings, so the first child to ask loads the
whole page in one query and the others are answered from memory. Unlike strawberry's
DataLoader there is no future and no await per field: the whole operation runs synchronously
(`schema.execute_sync` on a worker thread, gql/core/executor.py), which is what made the
async machinery the largest single cost of a request (README, "Where the API's time goes").

Loaders are created by `Context.loader(Kind)` on first use, never at module level: a loader
caches, and a cache shared across requests would serve one viewer's rows to another and go
stale. Each domain package defines its own `XByYLoader` subclasses in its `dataloaders.py`.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
from typing import Generic, TypeVar

from sqlmodel import Session

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SessionLoader(Generic[K, V]):
    """Batches a key with its siblings' keys into one `batch_load(keys)`; caches per request."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.cache: dict[K, V] = {}
        self.batches = 0  # batch_load calls, for tests that count work

    def load(self, key: K, siblings: Iterable[K] = ()) -> V:
        if key in self.cache:
            return self.cache[key]
        keys = list(dict.fromkeys([key, *(k for k in siblings if k not in self.cache)]))
        self.batches += 1
        for k, value in zip(keys, self.batch_load(keys), strict=True):
            self.cache[k] = value
        return self.cache[key]

    def clear_all(self) -> None:
        self.cache.clear()

    def batch_load(self, keys: list[K]) -> Sequence[V]:
        raise NotImplementedError
