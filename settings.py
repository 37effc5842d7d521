"""Process settings: one typed object, parsed from the environment once, by the composition root
(`bootstrap.py`), and passed down. Nothing else reads the environment.

Every value has a default that works on a developer machine; `DATABASE_URL` and `REDIS_URL`
are optional because the composition root starts embedded servers when they are missing. An
empty variable means its default (as `VAR= billing serve` did before). A bad value fails at
start-up with an error that names the variable (`Settings.from_env`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import AliasChoices, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent
DEFAULT_QUEUE = "billing-sync"


def _env(name: str) -> AliasChoices:
    # The variable's exact name is both how it is read and how an error refers to it.
    return AliasChoices(name)


def _duration_seconds(raw: object) -> object:
    """Seconds, given as a number or as text such as "7200", "120m" or "2h"."""
    if isinstance(raw, str) and raw.strip()[-1:].lower() in ("s", "m", "h"):
        text = raw.strip().lower()
        return float(text[:-1]) * {"s": 1, "m": 60, "h": 3600}[text[-1]]
    return raw


class SettingsError(Exception):
    """A setting in the environment has a value we cannot use; the message names it."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        frozen=True, extra="ignore", env_ignore_empty=True, populate_by_name=True
    )
    # How long after a period ends its close starts: late events of the period still land on its
    # own invoice meanwhile (the metering pipeline's lag, with room to spare). "7200", "120m", "2h".
    close_grace_seconds: Annotated[float, BeforeValidator(_duration_seconds)] = Field(
        7200.0, ge=0, validation_alias=_env("BILLING_CLOSE_GRACE")
    )
    # How often beat asks whether a period is due for its close (a no-op when it is not).
    billing_close_every_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("BILLING_CLOSE_EVERY")
    )
    # How long a mutation's idempotency key replays its first answer: a day at least, so that a
    # client retrying after an outage is still safe ("86400", "48h"); purged hourly after.
    idempotency_keep_seconds: Annotated[float, BeforeValidator(_duration_seconds)] = Field(
        86400.0, ge=86400, validation_alias=_env("API_IDEMPOTENCY_KEEP")
    )
    # Comma-separated: during a rotation both the old and the new endpoint secret verify.
    stripe_webhook_secrets: SecretStr = Field(
        SecretStr("whsec_billing_local"), validation_alias=_env("STRIPE_WEBHOOK_SECRETS")
    )

    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    redis_url: str | None = Field(None, validation_alias=_env("REDIS_URL"))
    local_dir: Path = Field(PROJECT_ROOT / ".local", validation_alias=_env("BILLING_LOCAL_DIR"))
    db_pool_size: int = Field(10, ge=1, validation_alias=_env("DB_POOL_SIZE"))
    rollup_platform_shards: int = Field(16, ge=1, validation_alias=_env("ROLLUP_SHARDS"))

    # The API's limits (gql/core/limits.py `Limits`, where each default is argued; the defaults
    # here are the same numbers, checked by tests/test_api_limits.py). bootstrap.py builds the
    # `Limits` and the API engine's timeouts from these.
    api_max_body_bytes: int = Field(1_000_000, ge=1, validation_alias=_env("API_MAX_BODY_BYTES"))
    api_max_document_bytes: int = Field(
        20_000, ge=1, validation_alias=_env("API_MAX_DOCUMENT_BYTES")
    )
    api_max_depth: int = Field(12, ge=1, validation_alias=_env("API_MAX_DEPTH"))
    api_max_fields: int = Field(1_000, ge=1, validation_alias=_env("API_MAX_FIELDS"))
    api_max_aliases: int = Field(20, ge=0, validation_alias=_env("API_MAX_ALIASES"))
    api_max_tokens: int = Field(2_000, ge=1, validation_alias=_env("API_MAX_TOKENS"))
    api_max_variables_depth: int = Field(12, ge=1, validation_alias=_env("API_MAX_VARIABLES_DEPTH"))
    api_parse_cache_entries: int = Field(
        512, ge=1, validation_alias=_env("API_PARSE_CACHE_ENTRIES")
    )
    api_parse_cache_bytes: int = Field(
        2_000_000, ge=1, validation_alias=_env("API_PARSE_CACHE_BYTES")
    )
    api_enqueue_timeout_seconds: float = Field(
        0.5, gt=0, validation_alias=_env("API_ENQUEUE_TIMEOUT")
    )
    # "all": one access log line per request; "errors": only for answers of 400 and up (the dev
    # stack's choice: its metering feed posts every few seconds and would bury the banner).
    api_access_log: Literal["all", "errors"] = Field("all", validation_alias=_env("API_ACCESS_LOG"))
    api_graphql_threads: int = Field(4, ge=0, validation_alias=_env("API_GRAPHQL_THREADS"))
    api_graphql_queue: int = Field(64, ge=0, validation_alias=_env("API_GRAPHQL_QUEUE"))
    api_subtree_cache_entries: int = Field(
        4_096, ge=0, validation_alias=_env("API_SUBTREE_CACHE_ENTRIES")
    )
    api_subtree_cache_bytes: int = Field(
        16_000_000, ge=0, validation_alias=_env("API_SUBTREE_CACHE_BYTES")
    )
    api_subtree_cache_max_variables_bytes: int = Field(
        1_024, ge=0, validation_alias=_env("API_SUBTREE_CACHE_MAX_VARIABLES_BYTES")
    )
    api_token_cache_seconds: float = Field(
        5.0, ge=0, le=60, validation_alias=_env("API_TOKEN_CACHE_SECONDS")
    )
    db_pool_timeout_seconds: float = Field(5.0, gt=0, validation_alias=_env("DB_POOL_TIMEOUT"))
    db_connect_timeout_seconds: int = Field(5, ge=1, validation_alias=_env("DB_CONNECT_TIMEOUT"))
    db_statement_timeout_ms: int = Field(
        15_000, ge=1, validation_alias=_env("DB_STATEMENT_TIMEOUT_MS")
    )

    # The dev stack's ports (`billing run`, `billing serve`, `billing mock-stripe`): `billing run`
    # refuses to start when one is taken and names the variable to change. A second stack on
    # one machine sets both (docs/operations.md, "The dev stack").
    api_port: int = Field(8000, ge=1, le=65535, validation_alias=_env("BILLING_API_PORT"))
    mock_port: int = Field(12111, ge=1, le=65535, validation_alias=_env("BILLING_MOCK_PORT"))

    stripe_api_base: str = Field("http://127.0.0.1:12111", validation_alias=_env("STRIPE_API_BASE"))
    stripe_api_key: SecretStr = Field(
        SecretStr("sk_test_billing_local"), validation_alias=_env("STRIPE_API_KEY")
    )
    stripe_rate_limit_per_second: float = Field(
        25.0, gt=0, validation_alias=_env("STRIPE_RATE_LIMIT")
    )
    stripe_lines_chunk: int = Field(50, ge=1, validation_alias=_env("STRIPE_LINES_CHUNK"))
    stripe_timeout_seconds: float = Field(20.0, gt=0, validation_alias=_env("STRIPE_TIMEOUT"))
    stripe_connect_timeout_seconds: float = Field(
        5.0, gt=0, validation_alias=_env("STRIPE_CONNECT_TIMEOUT")
    )

    # The Celery queue, and the namespace of our Redis keys (rate limit bucket, breaker): two
    # deployments or two test runs sharing one Redis never see each other's messages or state.
    sync_queue: str = Field(DEFAULT_QUEUE, validation_alias=_env("BILLING_SYNC_QUEUE"))
    # How long a retryable failure (a 5xx, a timeout, a 429, Redis or PostgreSQL away) is
    # retried, counted from the invoice's first failure since it last synced: "24h", "90m",
    # "3600". At most 24 h, Stripe's idempotency key lifetime, so that every retry of a step
    # still finds the answer its key saved (docs/operations.md, "Retries measured in time").
    sync_retry_horizon_seconds: Annotated[float, BeforeValidator(_duration_seconds)] = Field(
        86400.0, gt=0, le=86400, validation_alias=_env("SYNC_RETRY_HORIZON")
    )
    # A backstop only: the horizon decides when retrying ends. With the default backoff (2 s
    # doubling to a 600 s cap, full jitter) a 24 h horizon is about 290 attempts; this stops an
    # invoice whose attempts fail faster than any backoff (a worker killed by it, again and
    # again) well before its horizon.
    sync_max_attempts: int = Field(1000, ge=1, validation_alias=_env("SYNC_MAX_ATTEMPTS"))
    sync_backoff_base_seconds: float = Field(2.0, ge=0, validation_alias=_env("SYNC_BACKOFF_BASE"))
    sync_backoff_cap_seconds: float = Field(600.0, ge=0, validation_alias=_env("SYNC_BACKOFF_CAP"))
    # A claim holds the invoice this long; it must outlast the task's hard time limit, so a
    # live attempt never loses its lease to a second worker.
    sync_lease_seconds: float = Field(180.0, gt=0, validation_alias=_env("SYNC_LEASE_SECONDS"))
    sync_breaker_seconds: float = Field(30.0, gt=0, validation_alias=_env("SYNC_BREAKER_SECONDS"))
    sync_sweep_every_seconds: float = Field(2.0, gt=0, validation_alias=_env("SYNC_SWEEP_EVERY"))
    sync_sweep_batch: int = Field(500, ge=1, validation_alias=_env("SYNC_SWEEP_BATCH"))
    # How long an enqueued row is left alone by the sweeper: covers the wait in the queue.
    sync_sweep_hold_seconds: float = Field(60.0, ge=0, validation_alias=_env("SYNC_SWEEP_HOLD"))
    # The sweeper tops the queue up to this depth, never more (back-pressure on month end).
    sync_max_queue_depth: int = Field(2000, ge=1, validation_alias=_env("SYNC_MAX_QUEUE_DEPTH"))
    sync_reconcile_every_seconds: float = Field(
        300.0, gt=0, validation_alias=_env("SYNC_RECONCILE_EVERY")
    )
    sync_reconcile_after_seconds: float = Field(
        86400.0, ge=0, validation_alias=_env("SYNC_RECONCILE_AFTER")
    )
    sync_reconcile_batch: int = Field(20, ge=1, validation_alias=_env("SYNC_RECONCILE_BATCH"))

    # Outbound webhooks (docs/webhooks-out.md): how long one attempt may take in all, the
    # capped exponential backoff between attempts, when a delivery is given up ("24h": a day
    # after its event), and how often beat sweeps for due deliveries.
    webhooks_out_timeout_seconds: float = Field(
        10.0, gt=0, le=60, validation_alias=_env("WEBHOOKS_OUT_TIMEOUT")
    )
    webhooks_out_backoff_base_seconds: Annotated[float, BeforeValidator(_duration_seconds)] = Field(
        30.0, ge=0, validation_alias=_env("WEBHOOKS_OUT_BACKOFF_BASE")
    )
    webhooks_out_backoff_cap_seconds: Annotated[float, BeforeValidator(_duration_seconds)] = Field(
        3600.0, ge=0, validation_alias=_env("WEBHOOKS_OUT_BACKOFF_CAP")
    )
    webhooks_out_give_up_seconds: Annotated[float, BeforeValidator(_duration_seconds)] = Field(
        86400.0, gt=0, validation_alias=_env("WEBHOOKS_OUT_GIVE_UP")
    )
    webhooks_out_sweep_every_seconds: float = Field(
        2.0, gt=0, validation_alias=_env("WEBHOOKS_OUT_SWEEP_EVERY")
    )
    # `make run`'s demo receiver of outbound webhooks (devstack/webhook_sink.py).
    webhook_sink_port: int = Field(
        12113, ge=1, le=65535, validation_alias=_env("WEBHOOK_SINK_PORT")
    )

    @classmethod
    def from_env(cls) -> Settings:
        """Parse the environment; SettingsError naming each bad variable and why."""
        try:
            return cls()
        except ValidationError as e:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
            )
            raise SettingsError(f"invalid settings in the environment: {problems}") from e
