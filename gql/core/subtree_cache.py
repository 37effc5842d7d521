"""Completed answers of immutable subtrees, reused across requests: past Strawberry's ceiling.

Some subtrees of an answer cannot change once their parent reaches a state: a finalized
invoice's line items are frozen (a database trigger refuses any change, and an invoice never
goes back to draft). For such a field, graphql-core's completed value (the plain dicts and
lists that become the JSON) depends only on the parent, the field's selection and its
arguments, so it is kept and handed back the next time instead of loading and executing the
same 10 lines again. A flyctl page is ~2,100 fields, ~1,800 of them line items.

What makes a hit identical to a fresh answer:
- the key is a 16-byte BLAKE2b digest of the parent's id and random public id, the document's
  text and operation name, the field's places in the document and the values of exactly the
  variables its subtree reads (arguments and directives of the field and of every field below
  it, fragments included), so a different selection, fragment or argument is a different entry,
  and a database restored or truncated with RESTART IDENTITY (serial ids used again) cannot
  match an old entry. A client's other variables never reach the key: 300 requests with a
  different 500 KB variable each once grew a worker by ~1 MB a request (tests/test_api_memory.py);
- only a subtree completed without errors is kept, and only when the rule says the parent is
  immutable (`cacheable(source)`: not a draft);
- no viewer in the key: the subtree is reached only through a parent the viewer may see, and
  its content does not depend on who looks.

A second kind of rule (`ResultRule`) is for answers that are cheap to read but costly to
complete: `monthlySummary` reads ~100 rollup rows in about a millisecond, and graphql-core then
spends 4-5 ms turning them into ~760 fields. There the key also holds a fingerprint of the
resolved value itself (every figure the answer is made of), so a hit is the fresh answer by
construction, whatever changed in between: nothing to invalidate.

Bounded per worker: LRU by entries and by estimated bytes (API_SUBTREE_CACHE_ENTRIES,
API_SUBTREE_CACHE_BYTES), one answer never more than an eighth of the budget, and nothing kept
when the variables the subtree reads are longer than API_SUBTREE_CACHE_MAX_VARIABLES_BYTES.
Hits, misses, entries and bytes are Prometheus metrics (gql/metrics.py). Used through
`caching_execution_context(rules)`, the schema's execution context, which completes plain
fields itself (gql/core/execution.py).
"""

from __future__ import annotations

import hashlib
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import (
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLObjectType,
    Node,
    VariableNode,
)

from gql.core.execution import PlainFieldsExecutionContext
from gql.metrics import (
    SUBTREE_CACHE_BYTES,
    SUBTREE_CACHE_ENTRIES,
    SUBTREE_CACHE_HITS,
    SUBTREE_CACHE_MISSES,
)


@dataclass(frozen=True)
class Rule:
    """`type_name.field_name` may be reused while `cacheable(source)`; `key(source)` names the
    parent (its id)."""

    type_name: str
    field_name: str
    cacheable: Callable[[Any], bool]
    key: Callable[[Any], object]


@dataclass(frozen=True)
class ResultRule:
    """`type_name.field_name`'s completed value may be reused for a resolved value with the same
    `fingerprint(value)`, which must cover everything the completed answer shows."""

    type_name: str
    field_name: str
    fingerprint: Callable[[Any], object]


def _size(value: Any) -> int:
    """Bytes a completed answer holds, roughly (the containers and their values; the response
    keys are the document's own strings, shared by every entry of that document)."""
    total = 0
    stack = [value]
    while stack:
        item = stack.pop()
        total += sys.getsizeof(item)
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return total


class SubtreeCache:
    """LRU of completed subtrees by a 16-byte digest, bounded by entries and by bytes.

    `max_variables_bytes`: a subtree whose arguments come from variables longer than this (in
    their repr) is not kept: such answers are rarely asked again and would crowd out the rest.
    """

    def __init__(
        self, max_entries: int, max_bytes: int = 16_000_000, max_variables_bytes: int = 1_024
    ) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_variables_bytes = max_variables_bytes
        self.entries: OrderedDict[bytes, tuple[Any, int]] = OrderedDict()
        self.bytes = 0
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def enabled(self) -> bool:
        return self.max_entries > 0 and self.max_bytes > 0

    def get(self, key: bytes) -> Any:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
        (SUBTREE_CACHE_HITS if found is not None else SUBTREE_CACHE_MISSES).inc()
        return found[0] if found is not None else None

    def put(self, key: bytes, value: Any) -> None:
        size = _size(value) + 200  # the key, the entry tuple and the LRU's own node
        if size > self.max_bytes // 8:
            return  # one answer never takes more than an eighth of the budget
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.bytes -= old[1]
            self.entries[key] = (value, size)
            self.bytes += size
            while len(self.entries) > self.max_entries or self.bytes > self.max_bytes:
                _, (_, dropped) = self.entries.popitem(last=False)
                self.bytes -= dropped
            entries, held = len(self.entries), self.bytes
        SUBTREE_CACHE_ENTRIES.set(entries)
        SUBTREE_CACHE_BYTES.set(held)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()
            self.bytes = 0
        SUBTREE_CACHE_ENTRIES.set(0)
        SUBTREE_CACHE_BYTES.set(0)


def _variables_used(
    nodes: Sequence[FieldNode], fragments: dict[str, FragmentDefinitionNode]
) -> frozenset[str]:
    """Names of the variables a field's subtree reads: in its arguments and directives and
    those of every field below it, fragments included."""
    names: set[str] = set()
    seen: set[str] = set()
    stack: list[Node] = list(nodes)
    while stack:
        node = stack.pop()
        if isinstance(node, VariableNode):
            names.add(node.name.value)
            continue
        if isinstance(node, FragmentSpreadNode):
            name = node.name.value
            if name not in seen and name in fragments:
                seen.add(name)
                stack.append(fragments[name])
        for attribute in node.keys:
            child = getattr(node, attribute, None)
            if isinstance(child, Node):
                stack.append(child)
            elif isinstance(child, tuple | list):
                stack.extend(c for c in child if isinstance(c, Node))
    return frozenset(names)


def _digest(where: bytes, *parts: object) -> bytes:
    """16 bytes naming one answer: the shared part and what the rule adds (the parent's
    identity, or the fingerprint of the resolved value)."""
    return hashlib.blake2b(where + repr(parts).encode(), digest_size=16).digest()


def caching_execution_context(
    rules: list[Rule], cache: SubtreeCache, result_rules: Sequence[ResultRule] = ()
) -> type[PlainFieldsExecutionContext]:
    by_field = {(r.type_name, r.field_name): r for r in rules}
    type_names = frozenset(r.type_name for r in rules)
    by_result = {(r.type_name, r.field_name): r for r in result_rules}
    result_type_names = frozenset(r.type_name for r in result_rules)
    base_execute_field = PlainFieldsExecutionContext.execute_field
    base_complete_value = PlainFieldsExecutionContext.complete_value

    class CachingExecutionContext(PlainFieldsExecutionContext):
        subtree_cache = cache
        always_slow = frozenset(by_field) | frozenset(by_result)
        _document_digest: bytes | None = None
        _places: dict[tuple[int, ...], bytes | None] | None = None

        def document_digest(self) -> bytes | None:
            """The document's text and operation name, digested once per operation; None
            without query text to key on."""
            if self._document_digest is None:
                loc = self.operation.loc  # the parsed text: field offsets below are into it
                if loc is None:
                    return None
                h = hashlib.blake2b(digest_size=16)
                h.update(loc.source.body.encode())
                h.update(
                    b"\0" + (self.operation.name.value if self.operation.name else "").encode()
                )
                self._document_digest = h.digest()
            return self._document_digest

        def _where(self, field_details_list: Any) -> bytes | None:
            """The key part both kinds of rule share: a digest of the document, the field's
            places in it and the values of the variables its subtree reads (only those: a
            client's unrelated variables never reach the key); None where nothing may be
            reused (the cache off, fragment variables, @defer, no query text, variables past
            `max_variables_bytes`: never guess)."""
            first = field_details_list[0]
            if (
                not cache.enabled
                or first.fragment_variable_values is not None
                or first.defer_usage is not None
            ):
                return None
            document = self.document_digest()
            if document is None:
                return None
            places = tuple(d.node.loc.start if d.node.loc else -1 for d in field_details_list)
            if self._places is None:
                self._places = {}
            if places not in self._places:
                used = _variables_used(
                    [d.node for d in field_details_list], self.fragment_definitions
                )
                coerced = self.variable_values.coerced
                values = repr(sorted((n, coerced.get(n)) for n in used)) if used else ""
                if len(values) > cache.max_variables_bytes:
                    self._places[places] = None
                else:
                    h = hashlib.blake2b(document, digest_size=16)
                    h.update(repr(places).encode() + b"\0" + values.encode())
                    self._places[places] = h.digest()
            return self._places[places]

        def _reuse(self, key: bytes, kind: type, compute: Callable[[], Any]) -> Any:
            """The kept value for `key`, or `compute()`, kept when it is a `kind` completed
            without errors."""
            found = cache.get(key)
            if found is not None:
                return found
            errors_before = len(self.collected_errors.errors)
            value = compute()
            if (
                isinstance(value, kind)
                and len(self.collected_errors.errors) == errors_before
                and not self.is_awaitable(value)
            ):
                cache.put(key, value)
            return value

        def execute_field(
            self,
            parent_type: GraphQLObjectType,
            source: Any,
            field_details_list: Any,
            path: Any,
            position_context: Any,
        ) -> Any:
            # Every field of every answer passes here: other types leave at the first test.
            if parent_type.name not in type_names:
                return base_execute_field(
                    self, parent_type, source, field_details_list, path, position_context
                )
            args = (parent_type, source, field_details_list, path, position_context)
            rule = by_field.get((parent_type.name, field_details_list[0].node.name.value))
            where = (
                self._where(field_details_list)
                if rule is not None and rule.cacheable(source)
                else None
            )
            if rule is None or where is None:
                return base_execute_field(self, *args)
            key = _digest(where, rule.type_name, rule.field_name, rule.key(source))
            return self._reuse(key, dict, lambda: base_execute_field(self, *args))

        def complete_value(
            self,
            return_type: Any,
            field_details_list: Any,
            info: Any,
            path: Any,
            result: Any,
            position_context: Any,
        ) -> Any:
            # Every completed value passes here: most leave at the first test. Only the field's
            # own value (not its list items, not the type inside its non-null wrapper) is kept.
            if info.parent_type.name not in result_type_names or path is not info.path:
                return base_complete_value(
                    self, return_type, field_details_list, info, path, result, position_context
                )
            args = (return_type, field_details_list, info, path, result, position_context)
            rule = by_result.get((info.parent_type.name, info.field_name))
            where = (
                self._where(field_details_list)
                if rule is not None
                and return_type is info.return_type
                and not self.is_awaitable(result)
                else None
            )
            if rule is None or where is None:
                return base_complete_value(self, *args)
            key = _digest(
                where, "result", rule.type_name, rule.field_name, rule.fingerprint(result)
            )
            return self._reuse(key, list, lambda: base_complete_value(self, *args))

    return CachingExecutionContext
