"""Celery tasks: thin shells over `sync.attempt` and `sync.sweeper`. Each re-reads its rows, so
running twice (a redelivered message, a sweep racing an enqueue) is harmless. Ids go in, never
rows; retries are rows in Postgres (next_attempt_at), never sleeps or `self.retry` here.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid

from sync import attempt, runtime, sweeper
from sync.celery_app import app, enqueue_sync, queue_name, quiet_outages

log = logging.getLogger("billing.sync")


def _owner() -> str:
    """The lease token: which process holds the invoice, unique per attempt."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:12]}"


@app.task(name="sync.sync_invoice")
@quiet_outages
def sync_invoice(invoice_id: int) -> str:
    # The attempt logs its own outcome line, with the invoice's number (sync.attempt.run).
    return attempt.run(runtime.current(), int(invoice_id), owner=_owner()).value


@app.task(name="sync.sweep")
@quiet_outages
def sweep() -> int:
    rt = runtime.current()
    depth = sweeper.queue_depth(rt.gateway.breaker.client, queue_name())
    return sweeper.sweep(rt, enqueue_sync, depth=depth)


@app.task(name="sync.reconcile")
@quiet_outages
def reconcile() -> int:
    return sweeper.reconcile(runtime.current(), enqueue_sync)
