"""Prometheus metrics of the API (prometheus-client, default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

REQUEST_SECONDS = Histogram(
    "billing_graphql_request_seconds",
    "GraphQL operation latency, by operation name",
    ["operation"],
    buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ERRORS = Counter(
    "billing_graphql_errors_total", "Top-level GraphQL errors and userErrors, by code", ["code"]
)
