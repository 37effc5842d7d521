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

Why every operation starts in a roomy frame (`in_roomy_frame`): CPython (3.11 and later) keeps
a thread's Python frames on a stack of 16 KB chunks, and frees a chunk with mmap's counterpart
as soon as the first frame in it returns. graphql-core executes a field as a few nested calls,
so wherever a chunk boundary falls inside that depth, every field call maps a fresh chunk,
faults its pages in and unmaps it again: measured with strace on the flyctl list, about 1,700
mmap/munmap pairs and 5,000 page faults a request, two thirds of its CPU (66 ms of 99 with
the profiler, 20 ms without the thrash). Where the boundary falls depends only on how deep the
operation starts (which is why the thread hop looked costly, and why the subtree cache's extra
frames per field changed it), so the fix is to choose the start: the operation runs inside a
call whose frame is too large for the current chunk, so CPython maps one chunk of 256 KB for
it, and the execution's own frames (up to ~17,000 words: far past any document the depth limit
admits) fit after it in that chunk. One mmap per operation, a few page faults; only pages
touched count in the RSS. tests/test_api_performance.py starts operations at many depths.
"""

from __future__ import annotations

import asyncio
import contextvars
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

T = TypeVar("T")


def _roomy(fn: Callable[[], T]) -> T:
    return fn()


# A frame of ~15,500 words does not fit in a 16 KB chunk: CPython maps a chunk of the next
# power of two that holds it plus 1,000 words of overhead (256 KB), and frames pushed while it
# runs use the ~17,000 words left in that chunk. Only the declared stack size grows; the
# interpreter never touches the unused part of it.
_roomy.__code__ = _roomy.__code__.replace(co_stacksize=15_500)


def in_roomy_frame(fn: Callable[[], T]) -> T:
    """`fn()`, run where no chunk boundary of the interpreter's frame stack is near."""
    return _roomy(fn)


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
            return in_roomy_frame(fn)
        with self.lock:
            if self.in_flight >= self.limit:
                raise Saturated
            self.in_flight += 1
        # Counted down when the thread is done, not when the awaiting request goes away: a
        # client that disconnects does not free the thread its operation still holds.
        # The operation runs with the request's context variables (its request id above all,
        # quoted by INTERNAL_ERROR messages; a pool thread has none of its own), in a roomy frame.
        future = self.pool.submit(contextvars.copy_context().run, in_roomy_frame, fn)
        future.add_done_callback(self._done)
        return await asyncio.wrap_future(future)

    def _done(self, _: object) -> None:
        with self.lock:
            self.in_flight -= 1

    def shutdown(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)
