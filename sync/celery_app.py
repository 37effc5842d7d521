"""The Celery application. Redis is the broker; results are ignored (state lives in Postgres).

Settings that matter, and why:
- task_acks_late + task_reject_on_worker_lost: a message is acknowledged only after the task
  ran, so a worker killed mid-sync gives the invoice back to the queue. Tasks are idempotent
  (the lease and the idempotency keys make a redelivery harmless).
- worker_prefetch_multiplier=1: a worker holds one message per process, so a slow invoice does
  not strand others behind it.
- visibility_timeout above the hard time limit: Redis redelivers an unacknowledged message after
  this long, which must never happen to a task that is still running.
"""

from __future__ import annotations

import logging
import os
import socket

from celery import Celery
from kombu.exceptions import KombuError
from redis.exceptions import RedisError

from sync.config import SyncConfig

log = logging.getLogger("billing.sync")
config = SyncConfig()

SOFT_TIME_LIMIT = 120
HARD_TIME_LIMIT = 150
VISIBILITY_TIMEOUT = 600

app = Celery("billing", broker=config.redis_url, include=["sync.tasks"])
app.conf.update(
    task_acks_late=True,
    task_reject_on_worker_lost=True,
    worker_prefetch_multiplier=1,
    task_ignore_result=True,
    result_backend=None,
    task_soft_time_limit=SOFT_TIME_LIMIT,
    task_time_limit=HARD_TIME_LIMIT,
    broker_transport_options={"visibility_timeout": VISIBILITY_TIMEOUT},
    broker_connection_retry_on_startup=True,
    broker_connection_timeout=3,
    task_default_queue=config.queue,
    worker_hijack_root_logger=False,
    beat_schedule={
        "sweep": {"task": "sync.sweep", "schedule": config.sweep_every_seconds},
        "reconcile": {"task": "sync.reconcile", "schedule": config.reconcile_every_seconds},
    },
)


def enqueue_sync(invoice_id: int) -> None:
    """Ask a worker to push this invoice now. Never raises: if the broker is down, the outbox
    row is still due and the sweeper will enqueue it once the broker is back."""
    from sync.tasks import sync_invoice

    try:
        sync_invoice.apply_async(args=(invoice_id,), queue=config.queue, retry=False)
    except (KombuError, RedisError, OSError) as e:
        log.warning(
            "enqueue failed; the sweeper will pick the invoice up",
            extra={"invoice_id": invoice_id, "error": str(e)},
        )


def run_worker(*, concurrency: int, hostname: str | None = None) -> None:
    name = hostname or f"billing-{os.getpid()}@{socket.gethostname()}"
    app.worker_main(
        ["worker", "-Q", config.queue, "-c", str(concurrency), "-n", name, "--loglevel=INFO"]
    )


def run_beat() -> None:
    from settings import load

    folder = load().local_dir
    folder.mkdir(parents=True, exist_ok=True)
    app.start(["beat", "--loglevel=INFO", "-s", str(folder / "celerybeat-schedule")])
