"""The schema, with every extension listed in one place."""

from __future__ import annotations

import time
from collections.abc import Iterator

import strawberry
from graphql import ExecutionResult, GraphQLError
from strawberry.extensions import (
    AddValidationRules,
    MaxAliasesLimiter,
    MaxTokensLimiter,
    ParserCache,
    QueryDepthLimiter,
    SchemaExtension,
    ValidationCache,
)
from strawberry.schema.config import StrawberryConfig

from gql.core.errors import MaskInternalErrors, bad_input
from gql.core.permissions import RequireToken
from gql.core.scalars import SCALARS
from gql.cycle.mutations import CycleMutations
from gql.cycle.queries import CycleQueries
from gql.invoices.mutations import InvoiceMutations
from gql.invoices.queries import InvoiceQueries
from gql.metrics import ERRORS, REQUEST_SECONDS
from gql.organizations.mutations import OrganizationMutations
from gql.organizations.queries import OrganizationQueries
from gql.prices.mutations import PriceMutations
from gql.prices.queries import PriceQueries
from gql.summary.queries import SummaryQueries
from gql.usage.mutations import UsageMutations

# Limits, with the reasons: the deepest useful query (organization > invoices > edges > node >
# lineItems > edges > node > amount > formatted) is 9 levels; 12 leaves room without allowing
# cyclic organization > invoices > organization > ... explosions. 2,000 tokens fit every
# dashboard query five times over. 20 aliases stop one request from fanning out into hundreds.
MAX_DEPTH = 12
MAX_TOKENS = 2_000
MAX_ALIASES = 20


# Rule classes built once: each limiter instance creates new rule classes, and the validation
# cache keys on them, so per-request limiters would make every validation a cache miss.
_LIMIT_RULES = [
    *QueryDepthLimiter(max_depth=MAX_DEPTH).validation_rules,
    *MaxAliasesLimiter(max_alias_count=MAX_ALIASES).validation_rules,
]


class QueryLimits(AddValidationRules):
    """Strawberry's depth and alias limiters, sharing their rule classes across requests."""

    def __init__(self) -> None:
        super().__init__(_LIMIT_RULES)


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
@strawberry.type
class Query(OrganizationQueries, InvoiceQueries, SummaryQueries, PriceQueries, CycleQueries):
    pass


@strawberry.type
class Mutation(
    InvoiceMutations, UsageMutations, PriceMutations, OrganizationMutations, CycleMutations
):
    pass


class Schema(strawberry.Schema):
    def process_errors(self, errors: list[GraphQLError], execution_context: object = None) -> None:
        # Client mistakes (validation, auth, bad input) are answers, not incidents, and internal
        # errors were already logged with their request id by MaskInternalErrors: nothing to add.
        return None


def build_schema() -> strawberry.Schema:
    return Schema(
        query=Query,
        mutation=Mutation,
        extensions=[
            # Clients send the same few documents over and over: parse and validate each once.
            lambda: ParserCache(maxsize=512),
            lambda: ValidationCache(maxsize=512),
            QueryLimits,
            lambda: MaxTokensLimiter(max_token_count=MAX_TOKENS),
            RequireToken,
            RejectNulBytes,
            MaskInternalErrors,
            Metrics,
        ],
        config=StrawberryConfig(scalar_map=SCALARS),
    )


schema = build_schema()
