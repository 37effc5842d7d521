"""Prometheus metrics the sync records where it runs (prometheus-client, default registry).

Gauges read from Postgres and Redis at scrape time (invoices by state, queue depth, breaker)
live in `sync.health.SyncCollector`, for the API's /metrics.
"""

from __future__ import annotations

from prometheus_client import Counter, Histogram

STRIPE_CALLS = Counter(
    "billing_stripe_calls_total",
    "Stripe API calls by endpoint template and outcome (ok, or the error's class)",
    ["endpoint", "outcome"],
)
STRIPE_CALL_SECONDS = Histogram(
    "billing_stripe_call_seconds",
    "Latency of one Stripe API call, rate-limit wait excluded",
    ["endpoint"],
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SYNC_ATTEMPTS = Counter(
    "billing_sync_attempts_total",
    "Sync attempts by outcome (ok, retry, failed, paused)",
    ["outcome"],
)
SYNC_ERRORS = Counter(
    "billing_sync_errors_total",
    "Failed sync attempts by error kind (timeout, rate_limit, server_error, invalid_request, "
    "authentication, mismatch ...) and the verdict taken",
    ["kind", "verdict"],
)
SYNC_SECONDS = Histogram(
    "billing_sync_attempt_seconds",
    "Wall time of one sync attempt of one invoice",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
SYNC_LATENCY = Histogram(
    "billing_sync_latency_seconds",
    "From finalize to SYNCED: how long an invoice took to reach Stripe",
    buckets=(0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400),
)
