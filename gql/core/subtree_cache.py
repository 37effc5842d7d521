"""Completed answers of immutable subtrees, reused across requests: past Strawberry's ceiling.

Some subtrees of an answer cannot change once their parent reaches a state: a finalized
invoice's line items are frozen (a database trigger refuses any change, and an invoice never
goes back to draft). For such a field, graphql-core's completed value (the plain dicts and
lists that become the JSON) depends only on the parent, the field's selection and its
arguments, so it is kept and handed back the next time instead of loading and executing the
same 10 lines again. A flyctl page is ~2,100 fields, ~1,800 of them line items.

What makes a hit identical to a fresh answer:
- the key is (the parent's id and random public id, the query text, the operation name, the
  variables, the field's place in the document), so a different selection, fragment or
  argument is a different entry, and a database restored or truncated with RESTART IDENTITY
  (serial ids used again) cannot match an old entry;
- only a subtree completed without errors is kept, and only when the rule says the parent is
  immutable (`cacheable(source)`: not a draft);
- no viewer in the key: the subtree is reached only through a parent the viewer may see, and
  its content does not depend on who looks.

A second kind of rule (`ResultRule`) is for answers that are cheap to read but costly to
complete: `monthlySummary` reads ~100 rollup rows in about a millisecond, and graphql-core then
spends 4-5 ms turning them into ~760 fields. There the key also holds a fingerprint of the
resolved value itself (every figure the answer is made of), so a hit is the fresh answer by
construction, whatever changed in between: nothing to invalidate.

Bounded (LRU by entries: ~5 KB an entry for 10 lines, so 4,096 entries stay under ~20 MB a
worker). Used through `caching_execution_context(rules)`, the schema's execution context.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from graphql import GraphQLObjectType

from gql.core.execution import PlainFieldsExecutionContext


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


class SubtreeCache:
    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[tuple[object, ...], Any] = OrderedDict()
        self.lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get(self, key: tuple[object, ...]) -> Any:
        with self.lock:
            found = self.entries.get(key)
            if found is not None:
                self.entries.move_to_end(key)
                self.hits += 1
            else:
                self.misses += 1
            return found

    def put(self, key: tuple[object, ...], value: Any) -> None:
        with self.lock:
            self.entries[key] = value
            self.entries.move_to_end(key)
            while len(self.entries) > self.max_entries:
                self.entries.popitem(last=False)

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


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
        _document_key: tuple[object, ...] | None = None

        def document_key(self) -> tuple[object, ...]:
            """The request's document and inputs, computed once per operation."""
            if self._document_key is None:
                loc = self.operation.loc  # the parsed text: field offsets below are into it
                query = loc.source.body if loc is not None else None
                variables = self.variable_values.coerced
                self._document_key = (
                    query,
                    self.operation.name.value if self.operation.name else None,
                    repr(sorted(variables.items())) if variables else None,
                )
            return self._document_key

        def _where(self, field_details_list: Any) -> tuple[object, ...] | None:
            """The key part both kinds of rule share: the field's places in the document and
            the document with its inputs; None where nothing may be reused (the cache off,
            fragment variables, @defer, no query text to key on: never guess)."""
            first = field_details_list[0]
            if (
                cache.max_entries <= 0
                or first.fragment_variable_values is not None
                or first.defer_usage is not None
            ):
                return None
            document = self.document_key()
            if document[0] is None:
                return None
            places = tuple(d.node.loc.start if d.node.loc else -1 for d in field_details_list)
            return (places, *document)

        def _reuse(self, key: tuple[object, ...], kind: type, compute: Callable[[], Any]) -> Any:
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
            key = (rule.type_name, rule.field_name, rule.key(source), *where)
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
            key = ("result", rule.type_name, rule.field_name, *where, rule.fingerprint(result))
            return self._reuse(key, list, lambda: base_complete_value(self, *args))

    return CachingExecutionContext
