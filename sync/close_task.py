"""The beat-driven month-end close: `sync.close_period` closes the period that is due (ended,
plus BILLING_CLOSE_GRACE), from the worker's runtime. Every tick after the grace runs it; a
period with nothing left costs two queries, a stalled or killed close is resumed by the next
tick, and two ticks at once share the work (the close claims with SKIP LOCKED).
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from models.close import cycle, driver
from sync import runtime, sweeper
from sync.celery_app import app, enqueue_sync, queue_name, quiet_outages

log = logging.getLogger("billing.close")

# Below the broker's visibility timeout (600 s), so Redis never redelivers a close that is
# still running; a close longer than this is cut here and resumed by the next tick.
CLOSE_TIME_LIMIT = 540


@app.task(
    name="sync.close_period", soft_time_limit=CLOSE_TIME_LIMIT - 30, time_limit=CLOSE_TIME_LIMIT
)
@quiet_outages
def close_period() -> str:
    cfg = runtime.config()
    now = datetime.now(UTC)
    period = cycle.due_period(now, grace=timedelta(seconds=cfg.close_grace_seconds))
    rt = runtime.current()
    nudge = sweeper.capped_enqueue(
        enqueue_sync,
        lambda: sweeper.queue_depth(rt.gateway.breaker.client, queue_name()),
        max_depth=rt.config.max_queue_depth,
    )
    done = driver.run(
        rt.sessions,
        period,
        clock=lambda: datetime.now(UTC),
        rollup_shards=cfg.rollup_shards,
        enqueue_sync=nudge,
    )
    level = logging.INFO if done.done else logging.DEBUG
    counts = {o.value: n for o, n in done.counts.items() if n}
    log.log(level, "close %s: %s", f"{period:%Y-%m}", counts or "nothing to do")
    return f"{period:%Y-%m}"
