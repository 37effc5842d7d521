"""The schema's execution context: graphql-core's executor with a fast path for plain fields.

Why: graphql-core executes every field the same way, whatever it is: a path segment, a resolve
info object, the resolver call (Strawberry's wrapper, then `getattr`), then `complete_value`
and `complete_leaf_value`, about 5 us a field on this machine. A flyctl page is ~2,100 fields
and ~1,900 of them are plain attributes of a line item, a money value or a sync state: no
resolver, no argument, no directive, a scalar or enum or another plain object. For those the
answer is `coerce_output_value(getattr(source, name))`, and that is what this context computes
for them, in one loop per object, while every other field (resolvers, lists, arguments,
abstract types, @defer) goes through graphql-core unchanged, in the document's order.

Identical answers, errors included: a plain field is side-effect free, so whenever the fast
path meets anything but the ordinary case (a null in a non-null field, a value the scalar
refuses, an exception, a nested object that does either), it drops its own result for that
field and lets graphql-core execute the same field from scratch, which raises or reports the
error exactly as it would have. The plan of a selection (which fields are plain) is computed
once per operation and selection, from the schema and the document only.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from graphql import (
    GraphQLEnumType,
    GraphQLNonNull,
    GraphQLObjectType,
    GraphQLScalarType,
)
from graphql.pyutils import Path, Undefined
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext

# Entries of a plan, one per response key, in the document's order:
# (key, SLOW, field_details_list, None, None, None): graphql-core executes it;
# (key, LEAF, attribute, coerce, nullable, None): a scalar or enum attribute;
# (key, OBJECT, attribute, object type, nullable, sub-selection): a plain object attribute;
# (key, TYPENAME, type name, None, None, None): __typename.
SLOW, LEAF, OBJECT, TYPENAME = 0, 1, 2, 3
Entry = tuple[str, int, Any, Any, Any, Any]
_FAILED = object()  # the fast path met something unusual: graphql-core redoes the field


class PlainFieldsExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """graphql-core's execution with plain fields completed in one loop (module docstring).

    Subclasses may name fields that must always take graphql-core's path (`always_slow`):
    fields whose execution they intercept."""

    always_slow: frozenset[tuple[str, str]] = frozenset()

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Plans by id of the grouped field set; graphql-core memoizes those sets for the
        # operation (keeping them alive), so an id names one set for the operation's life.
        self._plans: dict[int, tuple[Any, list[Entry] | None]] = {}
        self._getattr: Callable[[Any, str], Any] = getattr
        # Strawberry passes a manager per request, empty unless an extension has `resolve`
        # hooks; with any middleware every field must go through it.
        manager = self.middleware_manager
        self._fast = manager is None or not manager.middlewares

    def _plan(self, parent_type: GraphQLObjectType, grouped_field_set: Any) -> list[Entry] | None:
        """The entries of a selection, or None when no field of it is plain."""
        found = self._plans.get(id(grouped_field_set))
        if found is not None and found[0] is grouped_field_set:
            return found[1]
        entries: list[Entry] = []
        for key, field_details_list in grouped_field_set.items():
            entries.append(self._entry(parent_type, key, field_details_list))
        plan = entries if any(e[1] != SLOW for e in entries) else None
        self._plans[id(grouped_field_set)] = (grouped_field_set, plan)
        return plan

    def _entry(self, parent_type: GraphQLObjectType, key: str, field_details_list: Any) -> Entry:
        slow: Entry = (key, SLOW, field_details_list, None, None, None)
        first = field_details_list[0]
        node = first.node
        name = node.name.value
        if (
            first.defer_usage is not None
            or first.fragment_variable_values is not None
            or (parent_type.name, name) in self.always_slow
            or any(d.node.arguments or d.node.directives for d in field_details_list)
        ):
            return slow
        if name == "__typename":
            return (key, TYPENAME, parent_type.name, None, None, None)
        field_def = self.schema.get_field(parent_type, name)
        if (
            field_def is None
            or field_def.args
            or not getattr(field_def.resolve, "_is_default", False)
        ):
            return slow
        definition = field_def.extensions.get("strawberry-definition")
        attribute = getattr(definition, "python_name", None)
        if (
            not attribute
            or not getattr(definition, "is_basic_field", False)
            or getattr(definition, "default_resolver", getattr) is not getattr
        ):
            return slow  # a resolver, an extension, or a configured default resolver
        field_type = field_def.type
        nullable = not isinstance(field_type, GraphQLNonNull)
        named = field_type.of_type if isinstance(field_type, GraphQLNonNull) else field_type
        if isinstance(named, GraphQLScalarType | GraphQLEnumType):
            return (key, LEAF, attribute, named.coerce_output_value, nullable, None)
        if isinstance(named, GraphQLObjectType) and named.is_type_of is None:
            grouped, new_defer_usages, _ = self.collect_subfields(named, field_details_list)
            inner = None if new_defer_usages else self._plan(named, grouped)
            if inner is None or any(e[1] == SLOW for e in inner):
                return slow
            return (key, OBJECT, attribute, named, nullable, grouped)
        return slow

    def _plain(
        self, kind: int, attribute: Any, how: Any, nullable: Any, sub: Any, source: Any
    ) -> Any:
        """One plain field's completed value, or _FAILED when graphql-core must redo it."""
        if kind == TYPENAME:
            return attribute
        value = self._getattr(source, attribute)
        if value is None or value is Undefined:
            return None if nullable else _FAILED
        if isinstance(value, Exception):
            return _FAILED
        if kind == LEAF:
            coerced = how(value)
            return _FAILED if coerced is None or coerced is Undefined else coerced
        inner = self._plan(how, sub)  # all plain: checked when the entry was made
        assert inner is not None
        results: dict[str, Any] = {}
        for key, k, a, h, n, s in inner:
            completed = self._plain(k, a, h, n, s, value)
            if completed is _FAILED:
                return _FAILED
            results[key] = completed
        return results

    def execute_fields(
        self,
        parent_type: GraphQLObjectType,
        source_value: Any,
        path: Path | None,
        grouped_field_set: Any,
        position_context: Any,
    ) -> Any:
        plan = (
            self._plan(parent_type, grouped_field_set)
            if self._fast and position_context is None
            else None
        )
        if plan is None:
            return super().execute_fields(
                parent_type, source_value, path, grouped_field_set, position_context
            )
        results: dict[str, Any] = {}
        awaitable_keys: list[str] = []
        plain = self._plain
        for key, kind, attribute, how, nullable, sub in plan:
            if kind != SLOW:
                try:
                    value = plain(kind, attribute, how, nullable, sub, source_value)
                except Exception:  # graphql-core redoes the field and reports the error
                    value = _FAILED
                if value is not _FAILED:
                    results[key] = value
                    continue
            # graphql-core's own execution of this field, exactly as execute_fields does it.
            result = self.execute_field(
                parent_type,
                source_value,
                grouped_field_set[key],
                Path(path, key, parent_type.name),
                position_context,
            )
            if result is not Undefined:
                results[key] = result
                if self.is_awaitable(result):
                    awaitable_keys.append(key)
        if awaitable_keys:
            # Not reached by this schema (its resolvers are synchronous); kept correct anyway.
            return self._gather(results, awaitable_keys)
        return results

    async def _gather(self, results: dict[str, Any], keys: list[str]) -> dict[str, Any]:
        for key in keys:
            results[key] = await results[key]
        return results
