"""What the API process shows about the sync: the breaker for /readyz, and gauges for /metrics
(invoices by sync state, queue depth, breaker). Reads Redis and Postgres directly and never
imports Celery, so the API stays free of it. The composition root builds these once, on the
engine and Redis client it hands to the app; nothing here opens a connection of its own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import redis
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.tables import SyncStatus
from sync.breaker import Breaker, BreakerState
from sync.config import SyncConfig
from sync.runtime import breaker as make_breaker
from sync.sweeper import queue_depth

# A draft has no row, so NOT_REQUIRED is never counted here.
SYNC_STATES = tuple(s for s in SyncStatus if s != SyncStatus.NOT_REQUIRED)


def readiness(breaker: Breaker) -> tuple[str, bool, str]:
    """("stripe_sync", ok, detail): not ok while the breaker pauses the sync (Stripe rejected
    our API key) or its state cannot be read."""
    try:
        state = breaker.state()
    except redis.RedisError as e:
        return "stripe_sync", False, f"breaker state unreadable: {type(e).__name__}"
    if state == BreakerState.CLOSED:
        return "stripe_sync", True, "ok"
    return (
        "stripe_sync",
        False,
        f"paused: Stripe rejected our API key (breaker {state.value}); invoices wait, none fail",
    )


def readiness_check(client: redis.Redis, config: SyncConfig) -> Callable[[], tuple[str, bool, str]]:
    """`readiness` on one breaker over the app's Redis client, as /readyz takes its checks."""
    breaker = make_breaker(client, config)

    def check() -> tuple[str, bool, str]:
        return readiness(breaker)

    return check


class SyncCollector(Collector):
    """Invoices by sync state, queue depth and breaker, read at scrape time (one GROUP BY over
    the partial-indexed state column, one LLEN, one EXISTS)."""

    def __init__(self, engine: sa.Engine, client: redis.Redis, config: SyncConfig) -> None:
        self.engine = engine
        self.client = client
        self.queue = config.queue
        self.breaker = make_breaker(client, config)

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "billing_sync_invoices", "Finalized invoices by sync state", labels=["state"]
        )
        try:
            with self.engine.connect() as conn:
                rows = conn.execute(
                    sa.text("SELECT state, count(*) FROM invoice_sync GROUP BY state")
                ).all()
            counts = {str(state): int(n) for state, n in rows}
            for state in SYNC_STATES:
                states.add_metric([state.value], float(counts.get(state.value, 0)))
        except sa.exc.SQLAlchemyError:
            pass  # no samples rather than a failed scrape
        yield states
        oldest = GaugeMetricFamily(
            "billing_sync_oldest_pending_seconds",
            "Age of the oldest invoice not yet on Stripe (PENDING, SYNCING or RETRYING); 0 when "
            "none",
        )
        try:
            with self.engine.connect() as conn:
                age = conn.execute(
                    sa.text(
                        "SELECT COALESCE(EXTRACT(EPOCH FROM now() - min(created_at)), 0) "
                        # SYNCING too: at month end the oldest are the ones in flight, and
                        # a row whose worker died stays SYNCING until its lease runs out.
                        "FROM invoice_sync WHERE state IN (:pending, :syncing, :retrying)"
                    ),
                    {
                        "pending": SyncStatus.PENDING.value,
                        "syncing": SyncStatus.SYNCING.value,
                        "retrying": SyncStatus.RETRYING.value,
                    },
                ).scalar_one()
            oldest.add_metric([], float(age))
        except sa.exc.SQLAlchemyError:
            pass
        yield oldest
        yield from _close_metrics(self.engine)
        depth = GaugeMetricFamily("billing_sync_queue_depth", "Messages waiting in the sync queue")
        breaker = GaugeMetricFamily(
            "billing_sync_breaker_open", "1 while the sync is paused by the auth breaker"
        )
        try:
            depth.add_metric([], float(queue_depth(self.client, self.queue)))
            open_ = self.breaker.state() == BreakerState.OPEN
            breaker.add_metric([], 1.0 if open_ else 0.0)
        except redis.RedisError:
            pass
        yield depth
        yield breaker


def _close_metrics(engine: sa.Engine) -> Iterator[Metric]:
    """billing_close_*: the latest billing run (one row read by primary key order)."""
    drafts = GaugeMetricFamily(
        "billing_close_invoices",
        "Drafts of the latest close by outcome",
        labels=["period", "outcome"],
    )
    finished = GaugeMetricFamily(
        "billing_close_finished_timestamp_seconds",
        "When the latest close finished (0: running)",
        labels=["period"],
    )
    try:
        with engine.connect() as conn:
            run = conn.execute(
                sa.text("SELECT * FROM billing_runs ORDER BY period_start DESC LIMIT 1")
            ).first()
    except sa.exc.SQLAlchemyError:
        run = None
    if run is not None:
        period = f"{run.period_start:%Y-%m}"
        pending = max(0, run.drafts - run.finalized - run.skipped - run.failed)
        for outcome, n in (
            ("finalized", run.finalized),
            ("skipped", run.skipped),
            ("failed", run.failed),
            ("pending", pending),
        ):
            drafts.add_metric([period, outcome], float(n))
        finished.add_metric([period], run.finished_at.timestamp() if run.finished_at else 0.0)
    yield drafts
    yield finished
