"""The sync's view of `settings.Settings`: the values the worker, beat and sweeper use, under
the names the sync code reads. Built from a Settings the composition root parsed; this module
reads no environment. Tests and benchmarks narrow it with `dataclasses.replace`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import SecretStr

from settings import Settings
from sync.webhooks_out.config import OutConfig


@dataclass(frozen=True)
class SyncConfig:
    database_url: str
    redis_url: str
    # The Celery queue, and the namespace of our Redis keys (rate limit bucket, breaker).
    queue: str
    stripe_api_base: str
    stripe_api_key: SecretStr  # unwrapped only where the Stripe client is built
    stripe_timeout_seconds: float
    stripe_connect_timeout_seconds: float
    rate_limit_per_second: float
    lines_chunk: int
    max_attempts: int  # a backstop; the horizon decides (settings.py)
    retry_horizon_seconds: float
    backoff_base_seconds: float
    backoff_cap_seconds: float
    # A claim holds the invoice this long; it must outlast the task's hard time limit.
    lease_seconds: float
    breaker_seconds: float
    sweep_every_seconds: float
    sweep_batch: int
    sweep_hold_seconds: float
    max_queue_depth: int
    reconcile_every_seconds: float
    reconcile_after_seconds: float
    reconcile_batch: int
    close_every_seconds: float
    close_grace_seconds: float
    idempotency_keep_seconds: float
    rollup_shards: int
    webhooks_out_sweep_every_seconds: float = 2.0
    webhooks_out: OutConfig = field(default_factory=OutConfig)

    @classmethod
    def from_settings(cls, s: Settings) -> SyncConfig:
        if not s.database_url or not s.redis_url:
            raise ValueError(
                "the sync needs DATABASE_URL and REDIS_URL (bootstrap.environment() resolves them)"
            )
        return cls(
            database_url=s.database_url,
            redis_url=s.redis_url,
            queue=s.sync_queue,
            stripe_api_base=s.stripe_api_base,
            stripe_api_key=s.stripe_api_key,
            stripe_timeout_seconds=s.stripe_timeout_seconds,
            stripe_connect_timeout_seconds=s.stripe_connect_timeout_seconds,
            rate_limit_per_second=s.stripe_rate_limit_per_second,
            lines_chunk=s.stripe_lines_chunk,
            max_attempts=s.sync_max_attempts,
            retry_horizon_seconds=s.sync_retry_horizon_seconds,
            backoff_base_seconds=s.sync_backoff_base_seconds,
            backoff_cap_seconds=s.sync_backoff_cap_seconds,
            lease_seconds=s.sync_lease_seconds,
            breaker_seconds=s.sync_breaker_seconds,
            sweep_every_seconds=s.sync_sweep_every_seconds,
            sweep_batch=s.sync_sweep_batch,
            sweep_hold_seconds=s.sync_sweep_hold_seconds,
            max_queue_depth=s.sync_max_queue_depth,
            reconcile_every_seconds=s.sync_reconcile_every_seconds,
            reconcile_after_seconds=s.sync_reconcile_after_seconds,
            reconcile_batch=s.sync_reconcile_batch,
            close_every_seconds=s.billing_close_every_seconds,
            close_grace_seconds=s.close_grace_seconds,
            idempotency_keep_seconds=s.idempotency_keep_seconds,
            rollup_shards=s.rollup_platform_shards,
            webhooks_out_sweep_every_seconds=s.webhooks_out_sweep_every_seconds,
            webhooks_out=OutConfig(
                timeout_seconds=s.webhooks_out_timeout_seconds,
                connect_timeout_seconds=min(3.0, s.webhooks_out_timeout_seconds),
                backoff_base_seconds=s.webhooks_out_backoff_base_seconds,
                backoff_cap_seconds=s.webhooks_out_backoff_cap_seconds,
                give_up_after_seconds=s.webhooks_out_give_up_seconds,
            ),
        )
