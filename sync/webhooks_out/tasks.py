"""Celery tasks of the outbound webhooks: thin shells over sync.webhooks_out.deliver. Ids go in;
retries are rows (next_attempt_at), never `self.retry` or sleeps."""

from __future__ import annotations

from sync import runtime
from sync.celery_app import app, queue_name, quiet_outages
from sync.webhooks_out import deliver


def enqueue_delivery(delivery_id: int) -> None:
    """Ask a worker to attempt this delivery. A lost message is harmless: the row stays due
    and the next sweep after its hold enqueues it again."""
    app.send_task("sync.deliver_webhook", args=(delivery_id,), queue=queue_name(), retry=False)


@app.task(name="sync.deliver_webhook")
@quiet_outages
def deliver_webhook(delivery_id: int) -> str:
    rt = runtime.current()
    cfg = rt.config.webhooks_out
    with deliver.client(cfg) as http:
        return deliver.attempt_delivery(rt.sessions, int(delivery_id), cfg, rng=rt.rng, http=http)


@app.task(name="sync.sweep_webhooks")
@quiet_outages
def sweep_webhooks() -> int:
    rt = runtime.current()
    return deliver.sweep(rt.sessions, enqueue_delivery, rt.config.webhooks_out)
