"""What the API process shows about the sync: readiness (the breaker) and gauges for /metrics.
Wired by the composition root; reads Redis and Postgres directly, never imports Celery."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import redis
import sqlalchemy as sa
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from models.db import make_engine
from settings import Settings
from sync.breaker import Breaker
from sync.config import SyncConfig


def readiness_check(settings: Settings) -> Callable[[], tuple[str, bool, str]]:
    client = redis.Redis.from_url(settings.redis_url or "", socket_timeout=1)
    cfg = SyncConfig()
    breaker = Breaker(client, base_seconds=cfg.breaker_seconds, namespace=cfg.queue)

    def check() -> tuple[str, bool, str]:
        try:
            state = breaker.state()
        except redis.RedisError as e:
            return "stripe_sync", False, type(e).__name__
        if state == "closed":
            return "stripe_sync", True, "ok"
        return "stripe_sync", False, f"paused: Stripe rejected our API key (breaker {state})"

    return check


class SyncCollector(Collector):
    """Invoices by sync state, the queue's depth and the breaker, read at scrape time."""

    def __init__(self, settings: Settings) -> None:
        assert settings.database_url is not None
        self.engine = make_engine(settings.database_url, pool_size=1)
        self.redis = redis.Redis.from_url(settings.redis_url or "", socket_timeout=1)
        self.queue = SyncConfig().queue

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "billing_sync_invoices", "Invoices by sync state", labels=["state"]
        )
        with self.engine.connect() as conn:
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.text("SELECT state, count(*) FROM invoice_sync GROUP BY state")
                ).all()
            )
        for state in ("pending", "syncing", "synced", "retrying", "failed"):
            states.add_metric([state], float(counts.get(state, 0)))
        yield states
        depth = GaugeMetricFamily("billing_sync_queue_depth", "Messages waiting in the sync queue")
        breaker = GaugeMetricFamily(
            "billing_sync_breaker_open", "1 while syncing is paused by the breaker"
        )
        try:
            depth.add_metric([], float(self.redis.llen(self.queue)))
            breaker.add_metric(
                [],
                1.0 if Breaker(self.redis, base_seconds=1, namespace=self.queue).is_open() else 0.0,
            )
        except redis.RedisError:
            depth.add_metric([], float("nan"))
            breaker.add_metric([], float("nan"))
        yield depth
        yield breaker


def collector(settings: Settings) -> Collector:
    return SyncCollector(settings)
