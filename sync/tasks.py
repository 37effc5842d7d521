"""Celery tasks: thin shells over sync.push and sync.claims. Each re-reads its rows, so running
twice (a redelivered message, a sweep racing an enqueue) is harmless."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from functools import cache

import redis
from celery import Task

from models.db import make_engine, session_factory, transaction
from sync import claims
from sync.breaker import Breaker
from sync.celery_app import app, config
from sync.limiter import RateLimiter
from sync.push import Pusher
from sync.stripe_client import Gateway, make_client

log = logging.getLogger("billing.sync")


@cache
def _pusher() -> Pusher:
    """One per worker process (after fork): its own engine, pool and HTTP session."""
    engine = make_engine(config.database_url, pool_size=2)
    client = redis.Redis.from_url(config.redis_url)
    gateway = Gateway(
        client=make_client(
            config.stripe_api_key, config.stripe_api_base, timeout=config.stripe_timeout_seconds
        ),
        limiter=RateLimiter(
            client, per_second=config.rate_limit_per_second, key=f"{config.queue}:stripe:bucket"
        ),
        breaker=Breaker(client, base_seconds=config.breaker_seconds, namespace=config.queue),
    )
    return Pusher(sessions=session_factory(engine), gateway=gateway, config=config)


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name="sync.sync_invoice", bind=True)
def sync_invoice(self: Task, invoice_id: int) -> str:  # type: ignore[type-arg]
    outcome = _pusher().run(invoice_id, owner=_owner())
    log.info("sync attempt", extra={"invoice_id": invoice_id, "outcome": outcome})
    return outcome


@app.task(name="sync.sweep")
def sweep() -> int:
    """Enqueue due rows and expired leases (beat, every few seconds). Does nothing while the
    breaker is open: the rows stay due and go out once it closes."""
    pusher = _pusher()
    if pusher.gateway.breaker.is_open():
        return 0
    with transaction(pusher.sessions) as s:
        due = claims.sweep_due(s, batch=config.sweep_batch, hold_seconds=60)
    for invoice_id in due:
        sync_invoice.apply_async(args=(invoice_id,), queue=config.queue)
    return len(due)


@app.task(name="sync.reconcile")
def reconcile() -> int:
    """Re-verify a batch of long-synced invoices against Stripe (beat, every few minutes)."""
    pusher = _pusher()
    with transaction(pusher.sessions) as s:
        ids = claims.mark_for_reconcile(
            s,
            older_than=timedelta(seconds=config.reconcile_after_seconds),
            batch=config.reconcile_batch,
        )
    for invoice_id in ids:
        sync_invoice.apply_async(args=(invoice_id,), queue=config.queue)
    return len(ids)
