"""The Celery application. Redis is the broker; results are ignored (the state lives in
Postgres). Configured by the composition root (`configure(config)`, from the Settings that
bootstrap.py parsed), so importing this module connects to nothing and reads nothing.

Settings that matter, and why:
- task_acks_late + task_reject_on_worker_lost: a message is acknowledged only after its task ran,
  so a worker killed mid-sync gives the message back. Tasks are idempotent (the lease and the
  idempotency keys make a redelivery harmless), which is what makes late acks safe.
- worker_prefetch_multiplier=1: a worker process reserves one message at a time, so a slow
  invoice does not strand others behind it, and a killed worker strands at most one each.
- visibility_timeout above the hard time limit: Redis redelivers an unacknowledged message after
  that long, which must never happen to a task that is still running.
- soft/hard time limits below the lease: an attempt is over before its lease can expire.
"""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

from celery import Celery
from celery.exceptions import SoftTimeLimitExceeded
from celery.signals import worker_process_init

import outage
from sync import runtime
from sync.classify import treat_as_transient
from sync.config import SyncConfig

P = ParamSpec("P")
R = TypeVar("R")

log = logging.getLogger("billing.sync")

VISIBILITY_TIMEOUT = 600  # > the hard time limit
# Forecast spend alerts: how often the drafts with FORECAST thresholds are projected (seconds).
FORECAST_ALERTS_EVERY = 300

# Celery's own per-task lines ("Task sync.sweep[...] received / succeeded") and beat's "Sending
# due task" fire every sweep (2 s), and the Stripe SDK logs every request and response: routine,
# so below INFO. Our "sync attempt" line is the one INFO line per state change (calls are in
# billing_stripe_calls_total and sync_attempts); task failures are still logged at ERROR.
for _chatty in ("celery.app.trace", "celery.worker.strategy", "celery.beat", "stripe"):
    logging.getLogger(_chatty).setLevel(logging.WARNING)


def time_limits(lease_seconds: float) -> tuple[float, float]:
    """(soft, hard) task time limits inside the lease: with the default 180 s lease, 120 s and
    150 s. An attempt is always over, one way or another, before its lease can expire and a
    second worker take the invoice over."""
    hard = min(150.0, lease_seconds * 5 / 6)
    return hard * 0.8, hard


treat_as_transient(SoftTimeLimitExceeded)


def celery_settings(cfg: SyncConfig) -> dict[str, Any]:
    soft, hard = time_limits(cfg.lease_seconds)
    return {
        "broker_url": cfg.redis_url,
        "result_backend": None,
        "task_ignore_result": True,
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        "worker_prefetch_multiplier": 1,
        "task_soft_time_limit": soft,
        "task_time_limit": hard,
        "task_default_queue": cfg.queue,
        "broker_transport_options": {
            "visibility_timeout": VISIBILITY_TIMEOUT,
            # An API request enqueueing while Redis is down waits this long, not forever.
            "socket_connect_timeout": 2,
            "socket_timeout": 5,
        },
        "broker_connection_timeout": 2,
        "broker_connection_retry_on_startup": True,
        # Keep trying the broker for as long as Redis is away (Celery's default gives up after
        # 100 tries and the worker exits): the worker must recover by itself.
        "broker_connection_max_retries": None,
        # Beat sends through a scheduler that tells a Redis outage in one line and backs off,
        # instead of a traceback per due task (sync/beat.py).
        "beat_scheduler": "sync.beat:QuietScheduler",
        "worker_hijack_root_logger": False,
        "beat_schedule": {
            "sweep": {"task": "sync.sweep", "schedule": cfg.sweep_every_seconds},
            "reconcile": {"task": "sync.reconcile", "schedule": cfg.reconcile_every_seconds},
            # The month-end close (sync/close_task.py): a no-op until a period is due.
            "close-period": {"task": "sync.close_period", "schedule": cfg.close_every_seconds},
            # Idempotency keys past their keep (sync/housekeeping.py).
            "purge-idempotency-keys": {"task": "sync.purge_idempotency_keys", "schedule": 3600},
            # Forecast spend alerts (sync/forecast_alerts.py; its module says why not in ingest).
            "evaluate-forecast-alerts": {
                "task": "sync.evaluate_forecast_alerts",
                "schedule": FORECAST_ALERTS_EVERY,
            },
            # Outbound webhooks: spend alerts' notifications become events, due deliveries go
            # to the queue (sync/webhooks_out/).
            "sweep-webhooks": {
                "task": "sync.sweep_webhooks",
                "schedule": cfg.webhooks_out_sweep_every_seconds,
            },
        },
    }


app = Celery(
    "billing",
    include=[
        "sync.tasks",
        "sync.close_task",
        "sync.housekeeping",
        "sync.forecast_alerts",
        "sync.webhooks_out.tasks",
    ],
)


def quiet_outages(task: Callable[P, R]) -> Callable[P, R | None]:
    """A task body that, when PostgreSQL or Redis is away, counts the failure in the process's
    `outage` state (one log line per outage, then one a minute) and returns None instead of
    raising: Celery would log a full traceback per message and per sweep. While a dependency is
    down, a message that arrives before its backoff has passed is spent without trying. Nothing
    is lost either way: the work is a due outbox row (or a beat tick), which the sweeper hands
    out again once the server is back."""

    @functools.wraps(task)
    def run(*args: P.args, **kwargs: P.kwargs) -> R | None:
        if not (outage.POSTGRES.may_try() and outage.REDIS.may_try()):
            return None
        try:
            result = task(*args, **kwargs)
        except Exception as e:
            if outage.is_database_outage(e):
                if not outage.POSTGRES.down:  # the engine's watcher counts what it sees
                    outage.POSTGRES.failed(e)
                return None
            if outage.is_redis_outage(e):
                outage.REDIS.failed(e)
                return None
            raise
        # A message arrived and its task ran: the broker, Redis, answers again.
        outage.REDIS.recovered()
        return result

    return run


def configure(cfg: SyncConfig) -> Celery:
    """Point the app at its broker and queue, and give this process's sync Runtime its config.
    Called once by the composition root, before a worker, beat or enqueue starts."""
    app.conf.update(celery_settings(cfg))
    runtime.configure(cfg)
    return app


@worker_process_init.connect
def _fresh_runtime(**_: Any) -> None:
    """After the fork: no engine, pool or socket inherited from the parent process; the
    Runtime is built again from the configured (inherited, plain-data) config."""
    runtime.install(None)


def queue_name() -> str:
    """The configured queue. Raises (runtime.config) before `configure`: an unconfigured app
    talks to Celery's default broker, where no worker listens."""
    return runtime.config().queue


def enqueue_sync(invoice_id: int) -> None:
    """Ask a worker to push this invoice now. Never raises for the broker: if it is down the
    outbox row is still due, and the sweeper enqueues it once the broker is back. Enqueueing
    before `configure` is a bug, and raises."""
    queue = queue_name()
    try:
        app.send_task("sync.sync_invoice", args=(invoice_id,), queue=queue, retry=False)
    except Exception as e:  # the API's commit already happened; this is only a nudge
        log.warning(
            "enqueue failed; the sweeper will pick the invoice up",
            extra={"invoice_id": invoice_id, "error": f"{type(e).__name__}: {e}"},
        )


def run_worker(concurrency: int = 4, hostname: str | None = None, loglevel: str = "INFO") -> None:
    """A worker consuming the sync queue (blocks until stopped)."""
    name = hostname or f"billing-{os.getpid()}@{socket.gethostname()}"
    app.worker_main(
        ["worker", "-Q", queue_name(), "-c", str(concurrency), "-n", name, f"--loglevel={loglevel}"]
    )


def run_beat(schedule: Path, loglevel: str = "INFO") -> None:
    """Celery beat with the sweeper and reconciler schedule (blocks until stopped), keeping its
    schedule in the file `schedule`. Run one."""
    schedule.parent.mkdir(parents=True, exist_ok=True)
    app.start(["beat", f"--loglevel={loglevel}", "-s", str(schedule)])
