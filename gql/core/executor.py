"""Where GraphQL operations run: a bounded pool of worker threads, off the event loop.

Why a thread for the whole operation: resolvers read the database with blocking calls (psycopg,
through SQLAlchemy sessions). On the event loop one slow query stalls every request of the
worker; on a thread the loop keeps accepting, reading bodies and answering /healthz while the
operation runs, and the database waits release the GIL. And the operation runs with
`schema.execute_sync`: no coroutine, future or task per field (measured against async execution
on the loop with bench/api.py: README, "Where the API's time goes").

Why bounded, and what happens past the bound: `threads` operations run at once and at most
`queue` more wait for a thread; a request past that is refused at once with 503
SERVICE_UNAVAILABLE and Retry-After (gql/core/http.py), instead of queueing without limit while
its client times out. Each thread holds at most one pooled database connection, so `threads`
stays under the engine's pool size.

`threads=0` runs the operation inline on the event loop (the variant measured against).
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


class Saturated(Exception):
    """Every thread is busy and the queue is full."""


class BoundedExecutor:
    def __init__(self, threads: int, queue: int) -> None:
        self.threads = threads
        self.limit = threads + queue
        self.pool = (
            ThreadPoolExecutor(max_workers=threads, thread_name_prefix="graphql")
            if threads
            else None
        )
        self.in_flight = 0
        self.lock = threading.Lock()

    async def run(self, fn: Callable[[], T]) -> T:
        if self.pool is None:
            return fn()
        with self.lock:
            if self.in_flight >= self.limit:
                raise Saturated
            self.in_flight += 1
        # Counted down when the thread is done, not when the awaiting request goes away: a
        # client that disconnects does not free the thread its operation still holds.
        # The operation runs with the request's context variables (its request id above all,
        # quoted by INTERNAL_ERROR messages); a pool thread has none of its own.
        future = self.pool.submit(contextvars.copy_context().run, fn)
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _: object) -> None:
        with self.lock:
            self.in_flight -= 1

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
