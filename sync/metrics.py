"""Prometheus metrics of the sync (prometheus-client)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

STRIPE_CALLS = Counter(
    "billing_stripe_calls_total",
    "Stripe API calls, by endpoint and outcome",
    ["endpoint", "outcome"],
)
SYNC_ERRORS = Counter(
    "billing_sync_errors_total",
    "Failed sync attempts, by error class and verdict",
    ["error_class", "verdict"],
)
SYNC_SECONDS = Histogram(
    "billing_sync_seconds",
    "Wall time of one sync attempt of one invoice",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
)
