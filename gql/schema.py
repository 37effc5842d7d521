"""The schema, with every extension listed in one place."""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence

import strawberry
from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import SchemaExtension
from strawberry.schema.config import StrawberryConfig

from gql.core.errors import ErrorCodes, MaskInternalErrors, bad_input
from gql.core.limits import DEFAULT_LIMITS, Limits, document_limits
from gql.core.permissions import RequireToken
from gql.core.scalars import SCALARS
from gql.core.subtree_cache import ResultRule, Rule, SubtreeCache, caching_execution_context
from gql.cycle.mutations import CycleMutations
from gql.cycle.queries import CycleQueries
from gql.invoices.credit_notes import (
    CreditNoteMutations,
    OutageCreditMutations,
    OutageCreditQueries,
)
from gql.invoices.mutations import InvoiceMutations
from gql.invoices.queries import InvoiceQueries
from gql.metrics import ERRORS, REQUEST_SECONDS
from gql.organizations.mutations import OrganizationMutations
from gql.organizations.queries import OrganizationQueries
from gql.prices.mutations import PriceMutations
from gql.prices.queries import PriceQueries
from gql.summary.queries import SummaryQueries
from gql.summary.types import MonthlySummary
from gql.usage.mutations import UsageMutations
from gql.webhooks_out.mutations import WebhookMutations
from gql.webhooks_out.queries import WebhookQueries
from models import tables


def _has_nul(value: object) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_nul(v) for v in value)
    return False


class RejectNulBytes(SchemaExtension):
    """PostgreSQL text cannot hold NUL, so no valid input contains one: refuse it at the edge
    with a clear error instead of letting the driver fail deep inside a resolver."""

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        query = ec.query or ""
        if ec.result is None and (
            "\\u0000" in query or "\x00" in query or _has_nul(ec.variables or {})
        ):
            ec.result = ExecutionResult(
                data=None, errors=[bad_input("strings cannot contain NUL (\\u0000) characters")]
            )
        yield


class Metrics(SchemaExtension):
    """Latency by operation name, and errors by code (top-level and userErrors)."""

    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        yield
        ec = self.execution_context
        REQUEST_SECONDS.labels(ec.operation_name or "anonymous").observe(
            time.perf_counter() - started
        )
        result = ec.result
        for error in getattr(result, "errors", None) or []:
            code = (
                (error.extensions or {}).get("code", "GRAPHQL")
                if isinstance(error, GraphQLError)
                else "GRAPHQL"
            )
            ERRORS.labels(str(code)).inc()
        data = getattr(result, "data", None)
        if isinstance(data, dict):
            for payload in data.values():
                if isinstance(payload, dict):
                    for ue in payload.get("userErrors") or []:
                        ERRORS.labels(str(ue.get("code"))).inc()


# Field order in the SDL follows the bases: viewer, organization, invoice(s), monthlySummary.
@strawberry.type(description="What can be read: bills, their lines and sync state, spend, prices.")
class Query(
    OrganizationQueries,
    InvoiceQueries,
    SummaryQueries,
    PriceQueries,
    CycleQueries,
    OutageCreditQueries,
    WebhookQueries,
):
    pass


@strawberry.type(
    description="What can be written. Each mutation answers userErrors instead of raising, writes "
    "all or nothing, and takes an idempotencyKey for safe retries."
)
class Mutation(
    InvoiceMutations,
    CreditNoteMutations,
    OutageCreditMutations,
    UsageMutations,
    PriceMutations,
    OrganizationMutations,
    CycleMutations,
    WebhookMutations,
):
    pass


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: object = None) -> None:
        # Client mistakes (validation, auth, bad input) are answers, not incidents, and internal
        # errors were already logged with their request id by MaskInternalErrors: nothing to add.
        return None


def _finalized(source: object) -> bool:
    row = getattr(source, "row", None)
    return row is not None and row.status != tables.InvoiceStatus.DRAFT


# Finalized invoices are immutable (a trigger refuses changes to them and their lines), so their
# completed `lineItems` subtree is reused across requests (gql/core/subtree_cache.py).
IMMUTABLE_SUBTREES = [
    # Keyed by the random public id too: a database restored or truncated with RESTART
    # IDENTITY (the tests do) reuses serial ids, never 80-bit random ones.
    Rule(
        "Invoice",
        "lineItems",
        cacheable=_finalized,
        key=lambda source: (source.row.id, source.row.public_id),
    ),
]


def _summary_figures(months: Sequence[MonthlySummary]) -> object:
    """Every figure a list of MonthlySummary shows (year, monthOfYear and formatted follow)."""
    return tuple(
        (m.month, m.currency, m.invoice_count, m.subtotal.cents, m.total.cents, m.credited.cents)
        for m in months
    )


# The summary's rollup read costs ~1 ms, its completion into ~760 fields 4-5 ms: the completed
# list is reused for the same figures (gql/core/subtree_cache.py, ResultRule).
RESOLVED_SUBTREES = [
    ResultRule("Query", "monthlySummary", fingerprint=_summary_figures),
    ResultRule("Organization", "monthlySummary", fingerprint=_summary_figures),
]


def build_schema(limits: Limits = DEFAULT_LIMITS) -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        extensions=[
            # Byte and token limits, operationName, then the cost rule (depth, expanded fields,
            # aliases: one O(document) walk) before the full validation; parse and validation
            # cached together, bounded in bytes (gql/core/limits.py).
            document_limits(limits),
            ErrorCodes,
            RequireToken,
            RejectNulBytes,
            MaskInternalErrors,
            Metrics,
        ],
        config=StrawberryConfig(scalar_map=SCALARS),
        execution_context_class=caching_execution_context(
            IMMUTABLE_SUBTREES,
            SubtreeCache(
                limits.subtree_cache_entries,
                limits.subtree_cache_bytes,
                limits.subtree_cache_max_variables_bytes,
            ),
            RESOLVED_SUBTREES,
        ),
    )


schema = build_schema()
