"""Beat's scheduler, quiet through a Redis outage.

Celery beat publishes each due task to the broker; with Redis away, stock beat logs a
`SchedulingError` with a full traceback for every due task on every tick (~120 lines a second
in the issue 24 run, a sweep being due every 2 s). This scheduler counts the failure in the
process's `outage.REDIS` (one line per outage, one a minute while it lasts, one when it is
back) and, while Redis is down, skips due tasks until the backoff has passed. A skipped tick is
not lost work: the sweeper's next tick finds every due outbox row again.
"""

from __future__ import annotations

from typing import Any

from celery.beat import PersistentScheduler, ScheduleEntry

import outage


class QuietScheduler(PersistentScheduler):
    def apply_async(
        self,
        entry: ScheduleEntry,
        producer: Any = None,
        advance: bool = True,
        **kwargs: Any,
    ) -> Any:
        if not outage.REDIS.may_try():
            return None
        try:
            result = super().apply_async(entry, producer, advance, **kwargs)
        except Exception as e:
            # Celery wraps the broker's error in a SchedulingError; the cause is the context.
            cause = e.__cause__ or e.__context__ or e
            if outage.is_redis_outage(cause) or outage.is_redis_outage(e):
                outage.REDIS.failed(cause)
                return None
            raise
        outage.REDIS.recovered()
        return result
