"""The plain-field fast path (gql/core/execution.py) answers exactly as graphql-core does:
values, nulls, errors with their paths and null bubbling, aliases, fragments, __typename."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import strawberry

from gql.core.execution import PlainFieldsExecutionContext


@strawberry.enum
class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


@strawberry.type
class Amount:
    cents: int
    note: str | None


@strawberry.type
class Item:
    name: str
    colour: Colour
    amount: Amount
    maybe: Amount | None

    @strawberry.field
    def shout(self) -> str:
        return self.name.upper()


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item]:
        return [
            Item(name="a", colour=Colour.RED, amount=Amount(cents=1, note=None), maybe=None),
            Item(
                name="b",
                colour=Colour.BLUE,
                amount=Amount(cents=2, note="x"),
                maybe=Amount(cents=3, note=None),
            ),
            # Broken on purpose: a null where the schema promises a value, a bad enum value.
            Item(name=None, colour=Colour.RED, amount=Amount(cents=4, note=None), maybe=None),  # type: ignore[arg-type]
            Item(name="d", colour="green", amount=Amount(cents=None, note=None), maybe=None),  # type: ignore[arg-type]
            Item(
                name="e",
                colour=Colour.RED,
                amount=Amount(cents=5, note=None),
                maybe=Amount(cents="x", note=None),  # type: ignore[arg-type]
            ),
        ]

    @strawberry.field
    def strict(self) -> list[Item]:
        return [Item(name="z", colour=Colour.RED, amount=None, maybe=None)]  # type: ignore[arg-type]


QUERIES = [
    "{ items { name colour amount { cents note } maybe { cents } } }",
    "{ items { __typename n: name shout a: amount { __typename c: cents } } }",
    "{ items { ...F maybe { ...A } } } fragment F on Item { name amount { ...A } } fragment A on Amount { cents note }",
    "{ items { name name amount { cents } amount { note } } }",
    "{ items { colour } }",
    "{ strict { name amount { cents } } items { name } }",
    "query($yes: Boolean!) { items { name @include(if: $yes) amount @skip(if: $yes) { cents } } }",
]


def _answer(schema: strawberry.Schema, query: str) -> dict[str, Any]:
    result = schema.execute_sync(query, variable_values={"yes": True})
    return {
        "data": result.data,
        "errors": [(e.message, e.path) for e in result.errors or []],
    }


@pytest.mark.parametrize("query", QUERIES)
def test_plain_fields_answer_as_graphql_core_does(query: str) -> None:
    plain = strawberry.Schema(query=Query, execution_context_class=PlainFieldsExecutionContext)
    reference = strawberry.Schema(query=Query)
    assert _answer(plain, query) == _answer(reference, query)
