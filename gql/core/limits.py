"""What one request may cost, and the checks that enforce it at O(size of the document).

Strawberry's QueryDepthLimiter and MaxAliasesLimiter walk every fragment again each time it is
spread, so `fragment Fi on Viewer { ...F(i-1) ...F(i-1) }` doubles their work per line: an
865-byte document took 4 s at i = 20, and i = 29 pinned a worker for minutes. `QueryCost`
replaces both: each fragment's expanded field count, depth and alias count are computed once
(memoised by name), and a spread adds the fragment's totals instead of walking it again, so the
work is linear in the document whatever it expands to. It is a validation rule, so it runs
before the token check and refuses a bomb without touching the database.

The byte limits (request body, document) and the bounded parse cache live here too; they are
one `Limits` value, passed to `create_app(..., limits=...)`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    ValidationContext,
    ValidationRule,
    specified_rules,
)
from graphql.language import Node, parse
from graphql.language.visitor import SKIP, VisitorAction
from strawberry.extensions import SchemaExtension
from strawberry.schema.schema import validate_document

from gql.core.errors import ClientError
from settings import Settings


@dataclass(frozen=True)
class Limits:
    """Every size limit of the API, with the reason for each value."""

    # The largest legitimate body is addLineItems with 1,000 lines of ~400 bytes each.
    max_body_bytes: int = 1_000_000
    # Every dashboard query is under 2 KB; 20 KB leaves room for hand-written ones.
    max_document_bytes: int = 20_000
    # The deepest useful query (organization > invoices > nodes > lineItems > nodes > amount >
    # formatted) is 7 levels below the root; 12 leaves room without allowing cyclic
    # organization > invoices > organization ... explosions.
    max_depth: int = 12
    # Fields after expanding every fragment: the flyctl list is ~60, GraphiQL's introspection
    # query ~200.
    max_fields: int = 1_000
    max_aliases: int = 20
    # 2,000 tokens fit every dashboard query five times over.
    max_tokens: int = 2_000
    # Variables: input > items > [i] > metadata > five levels of JSON is 9.
    max_variables_depth: int = 12
    # Parsed documents kept for reuse: by count and by their total query text size.
    parse_cache_entries: int = 512
    parse_cache_bytes: int = 2_000_000
    # Database: a pool checkout, a connect and a statement each give up after this long.
    db_pool_timeout_seconds: float = 5.0
    db_connect_timeout_seconds: int = 5
    db_statement_timeout_ms: int = 15_000
    # How long a request waits for the Celery enqueue after commit before it answers anyway
    # (the sweeper enqueues whatever was lost).
    enqueue_timeout_seconds: float = 0.5
    # GraphQL operations run on this many threads per worker process (gql/core/executor.py;
    # 0: on the event loop); each holds at most one of the engine's db_pool_size connections.
    # Past `graphql_queue` waiting operations a request gets 503 at once.
    graphql_threads: int = 4
    graphql_queue: int = 64
    # A live token is looked up at most once per this many seconds: a revoked token stops
    # working within it (gql/core/tokens.py). 0 looks it up on every request.
    token_cache_seconds: float = 5.0
    # Completed subtrees of immutable rows kept per worker (a finalized invoice's line items:
    # gql/core/subtree_cache.py), bounded by count and by their estimated bytes (10 lines of
    # 10 fields are ~9 KB as Python objects); 0 in either turns the cache off. A subtree whose
    # arguments come from variables longer than the last bound (their repr) is never kept.
    subtree_cache_entries: int = 4_096
    subtree_cache_bytes: int = 16_000_000
    subtree_cache_max_variables_bytes: int = 1_024

    @classmethod
    def from_settings(cls, cfg: Settings) -> Limits:
        """The limits named in the settings: each field is `api_<field>` there, or `<field>`
        for the database's (`db_pool_timeout_seconds`), so a new limit needs no mapping."""
        values = {}
        for f in dataclasses.fields(cls):
            name = f"api_{f.name}" if hasattr(cfg, f"api_{f.name}") else f.name
            values[f.name] = getattr(cfg, name)
        return cls(**values)


DEFAULT_LIMITS = Limits()


@dataclass
class _Cost:
    fields: int = 0
    depth: int = 0
    aliases: int = 0


class _CostWalker:
    """Expanded cost of selection sets; each fragment is costed once, then looked up."""

    def __init__(self, document: DocumentNode, limits: Limits) -> None:
        self.limits = limits
        self.fragments = {
            d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
        }
        self.memo: dict[str, _Cost] = {}
        self.in_progress: set[str] = set()

    def fragment(self, name: str) -> _Cost:
        found = self.memo.get(name)
        if found is not None:
            return found
        definition = self.fragments.get(name)
        if definition is None or name in self.in_progress:
            # Unknown fragments and cycles are reported by the specified rules
            # (KnownFragmentNames, NoFragmentCycles); they cost nothing here.
            return _Cost()
        self.in_progress.add(name)
        cost = self.selections(definition.selection_set)
        self.in_progress.discard(name)
        self.memo[name] = cost
        return cost

    def selections(self, selection_set: SelectionSetNode | None) -> _Cost:
        total = _Cost()
        if selection_set is None:
            return total
        cap = self.limits.max_fields + 1  # past the limit the exact figure does not matter
        for sel in selection_set.selections:
            if isinstance(sel, FieldNode):
                child = self.selections(sel.selection_set)
                introspection = sel.name.value.startswith("__")
                total.fields = min(cap, total.fields + 1 + child.fields)
                total.aliases = min(cap, total.aliases + (sel.alias is not None) + child.aliases)
                # Introspection (GraphiQL's schema query nests ofType eight deep) is exempt from
                # the depth limit; its fields still count.
                depth = 0 if introspection else 1 + child.depth
                total.depth = max(total.depth, depth)
            else:
                if isinstance(sel, FragmentSpreadNode):
                    child = self.fragment(sel.name.value)
                else:
                    assert isinstance(sel, InlineFragmentNode)
                    child = self.selections(sel.selection_set)
                total.fields = min(cap, total.fields + child.fields)
                total.aliases = min(cap, total.aliases + child.aliases)
                total.depth = max(total.depth, child.depth)
        return total


def operation_costs(document: DocumentNode, limits: Limits) -> dict[str, tuple[int, int, int]]:
    """(fields, depth, aliases) of each operation, fragments expanded. For tests and docs."""
    walker = _CostWalker(document, limits)
    out: dict[str, tuple[int, int, int]] = {}
    for d in document.definitions:
        if isinstance(d, OperationDefinitionNode):
            c = walker.selections(d.selection_set)
            out[d.name.value if d.name else ""] = (c.fields, c.depth, c.aliases)
    return out


def limit_error(message: str, limit: str, maximum: int, node: Node | None = None) -> GraphQLError:
    return GraphQLError(
        message,
        nodes=[node] if node is not None else None,
        extensions={"code": "GRAPHQL_VALIDATION_FAILED", "limit": limit, "max": maximum},
    )


def cost_errors(document: DocumentNode, limits: Limits) -> list[GraphQLError]:
    """Errors for each operation past the depth, expanded-field or alias limit; one linear walk."""
    walker = _CostWalker(document, limits)
    errors: list[GraphQLError] = []
    for d in document.definitions:
        if not isinstance(d, OperationDefinitionNode):
            continue
        cost = walker.selections(d.selection_set)
        name = f"'{d.name.value}'" if d.name else "the operation"
        if cost.depth > limits.max_depth:
            errors.append(
                limit_error(
                    f"{name} is {cost.depth} levels deep; at most {limits.max_depth}",
                    "depth",
                    limits.max_depth,
                    d,
                )
            )
        if cost.fields > limits.max_fields:
            errors.append(
                limit_error(
                    f"{name} selects more than {limits.max_fields} fields once fragments are "
                    "expanded",
                    "fields",
                    limits.max_fields,
                    d,
                )
            )
        if cost.aliases > limits.max_aliases:
            errors.append(
                limit_error(
                    f"{name} uses more than {limits.max_aliases} aliases",
                    "aliases",
                    limits.max_aliases,
                    d,
                )
            )
    return errors


def query_cost_rule(limits: Limits) -> type[ValidationRule]:
    """`cost_errors` as a graphql-core validation rule, for schemas that validate with rules
    (DocumentLimits calls `cost_errors` directly, before the other rules, instead)."""

    class QueryCost(ValidationRule):
        def __init__(self, context: ValidationContext) -> None:
            super().__init__(context)

        def enter_document(self, node: DocumentNode, *_args: Any) -> VisitorAction:
            for error in cost_errors(node, limits):
                self.report_error(error)
            return SKIP  # cost_errors saw everything this rule needs

    return QueryCost


@dataclass
class _Entry:
    document: DocumentNode
    size: int
    errors: list[GraphQLError] | None = None  # None until validated


class DocumentCache:
    """Parsed and validated documents by query text, bounded by entries and by total text size
    (LRU). A parsed document takes roughly 20x its text in memory, so a bound on the count alone
    let eight 10 MB documents pin 160 MB; the byte bound keeps the whole cache small. The
    validation result lives in the same entry, so it cannot keep an evicted document alive."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.size = 0
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, query: str, max_tokens: int) -> _Entry:
        with self.lock:
            found = self.entries.get(query)
            if found is not None:
                self.entries.move_to_end(query)
                return found
        entry = _Entry(parse(query, max_tokens=max_tokens), len(query))
        with self.lock:
            if query not in self.entries:
                self.entries[query] = entry
                self.size += entry.size
            while self.entries and (
                self.size > self.max_bytes or len(self.entries) > self.max_entries
            ):
                _, old = self.entries.popitem(last=False)
                self.size -= old.size
        return entry


class DocumentLimits(SchemaExtension):
    """The document's way in, in order:

    1. the byte limit, before parsing (PAYLOAD_TOO_LARGE);
    2. parsing with the token limit, through the bounded cache;
    3. several operations need an operationName (the GraphQL-over-HTTP spec; Strawberry would
       run the first);
    4. the cost check (depth, expanded fields, aliases) alone first: a bomb is refused after one
       linear walk, without the ~30 specified rules each walking it too (measured: 1.3 KB bomb,
       validation with every rule 15-20 ms, the cost walk alone under 1 ms);
    5. then the full validation, cached with the document.

    Built by `document_limits(limits)`: one cache per schema, shared by its requests."""

    limits: Limits = DEFAULT_LIMITS
    cache: DocumentCache
    entry: _Entry | None = None

    @classmethod
    def too_large(cls, query: str) -> bool:
        limit = cls.limits.max_document_bytes
        # A character is 1 to 4 bytes in UTF-8: encode only when the count alone cannot tell.
        return len(query) > limit or (
            len(query) * 4 > limit and len(query.encode("utf-8", "surrogatepass")) > limit
        )

    @classmethod
    def prepare(cls, query: str, schema: GraphQLSchema) -> None:
        """Parse and validate into the cache ahead of execution, so a caller can run this in a
        worker thread (gql/core/http.py does) and a cache miss never holds the event loop: a
        1.3 KB fragment bomb takes 2-10 ms just to parse. Errors are left for the real pass."""
        if cls.too_large(query):
            return
        try:
            entry = cls.cache.get(query, cls.limits.max_tokens)
        except GraphQLError:
            return
        if entry.errors is None:
            errors = cost_errors(entry.document, cls.limits)
            entry.errors = errors or validate_document(
                schema, entry.document, tuple(specified_rules)
            )

    def on_parse(self) -> Iterator[None]:
        ec = self.execution_context
        query = ec.query or ""
        limit = self.limits.max_document_bytes
        if self.too_large(query):
            raise ClientError(
                f"the GraphQL document is larger than {limit} bytes", "PAYLOAD_TOO_LARGE"
            )
        if ec.graphql_document is None:
            self.entry = self.cache.get(query, self.limits.max_tokens)
            ec.graphql_document = self.entry.document
        yield
        document = ec.graphql_document
        operations = sum(
            isinstance(d, OperationDefinitionNode)
            for d in (document.definitions if document else ())
        )
        if operations > 1 and not ec._provided_operation_name:
            raise ClientError(
                "the document has several operations: name one in operationName",
                "GRAPHQL_VALIDATION_FAILED",
            )

    def on_validate(self) -> Iterator[None]:
        ec = self.execution_context
        entry = self.entry
        if entry is not None and ec.graphql_document is entry.document:
            if entry.errors is None:
                errors = cost_errors(entry.document, self.limits)
                if not errors:
                    errors = validate_document(
                        ec.schema._schema, entry.document, ec.validation_rules
                    )
                entry.errors = errors
            ec.pre_execution_errors = list(entry.errors)
        yield


def document_limits(limits: Limits) -> type[DocumentLimits]:
    cache = DocumentCache(limits.parse_cache_entries, limits.parse_cache_bytes)
    return type(
        "DocumentLimits",
        (DocumentLimits,),
        {"limits": limits, "cache": cache},
    )
