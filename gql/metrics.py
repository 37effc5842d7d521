"""Prometheus metrics of the API (prometheus-client, default registry)."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

REQUEST_SECONDS = Histogram(
    "billing_graphql_request_seconds",
    "GraphQL operation latency, by operation name",
    ["operation"],
    buckets=(0.002, 0.005, 0.01, 0.015, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
ERRORS = Counter(
    "billing_graphql_errors_total", "Top-level GraphQL errors and userErrors, by code", ["code"]
)
# The subtree cache (gql/core/subtree_cache.py), per worker process.
SUBTREE_CACHE_HITS = Counter(
    "billing_graphql_subtree_cache_hits_total", "Completed subtrees answered from the cache"
)
SUBTREE_CACHE_MISSES = Counter(
    "billing_graphql_subtree_cache_misses_total",
    "Cacheable subtrees executed because the cache did not hold them",
)
SUBTREE_CACHE_BYTES = Gauge(
    "billing_graphql_subtree_cache_bytes", "Estimated bytes the subtree cache holds"
)
SUBTREE_CACHE_ENTRIES = Gauge(
    "billing_graphql_subtree_cache_entries", "Completed subtrees the cache holds"
)
