"""The sync enqueue after commit, kept off the event loop.

A mutation registers `ctx.sync_after_commit(id)` on its unit of work; after the commit the hook
calls `ctx.enqueue_sync(id)`, which here only records the id. When
the operation is done, the HTTP view (gql/core/http.py) hands the ids to the real enqueue (Celery over Redis) in a
worker thread and waits at most `timeout` seconds for it. With Redis down or slow, each call
used to block the whole event loop for the broker's timeout (about 2 s per finalize); now the
loop keeps serving other requests, and this request answers after `timeout` at worst. Nothing is
lost either way: the outbox row is due, and the sweeper enqueues it (docs/sync.md, "The outbox").
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger("billing.api")


class DeferredEnqueue:
    """Collects invoice ids during one operation; `flush` sends them off the loop."""

    def __init__(self, send: Callable[[int], None], timeout: float) -> None:
        self.send = send
        self.timeout = timeout
        self.ids: list[int] = []

    def __call__(self, invoice_id: int) -> None:
        self.ids.append(invoice_id)

    def _send_all(self, ids: list[int]) -> None:
        for invoice_id in ids:
            try:
                self.send(invoice_id)
            except Exception:  # the sweeper is the safety net; a failed enqueue is not an error
                log.warning("enqueue failed; the sweeper will pick it up", exc_info=True)

    async def flush(self) -> None:
        ids, self.ids = self.ids, []
        if not ids:
            return
        try:
            await asyncio.wait_for(asyncio.to_thread(self._send_all, ids), self.timeout)
        except TimeoutError:
            # The thread goes on (bounded by the broker's own socket timeout); we answer now.
            log.warning("enqueue slower than %.1f s; answering without waiting", self.timeout)
