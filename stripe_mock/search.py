"""A small subset of Stripe's search query language.

Supported: `field:'value'`, `metadata['key']:'value'`, double quotes too, `-` to negate, and
clauses joined by all-`AND` or all-`OR` (Stripe does not allow mixing them either).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ParamError

_CLAUSE = re.compile(
    r"""\s*(?P<neg>-)?
    (?:metadata\[(?P<mq>['"])(?P<mkey>(?:\\.|(?!(?P=mq)).)*)(?P=mq)\]|(?P<field>[a-z_]+))
    \s*:\s*
    (?:(?P<vq>['"])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)|(?P<bare>[^\s'"]+))
    \s*""",
    re.VERBOSE,
)
_JOIN = re.compile(r"(AND|OR)\s", re.IGNORECASE)
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Clause:
    field: str
    metadata_key: str | None
    value: str
    negated: bool

    def holds(self, fields: Mapping[str, str | None], metadata: Mapping[str, str]) -> bool:
        actual = (
            metadata.get(self.metadata_key)
            if self.metadata_key is not None
            else fields.get(self.field)
        )
        return (actual == self.value) != self.negated


@dataclass(frozen=True)
class Query:
    clauses: tuple[Clause, ...]
    any_of: bool

    def matches(self, fields: Mapping[str, str | None], metadata: Mapping[str, str]) -> bool:
        results = (c.holds(fields, metadata) for c in self.clauses)
        return any(results) if self.any_of else all(results)


def parse_query(text: str, *, fields: frozenset[str]) -> Query:
    clauses: list[Clause] = []
    joins: set[str] = set()
    pos = 0
    while True:
        match = _CLAUSE.match(text, pos)
        if match is None:
            raise _invalid(text, f"expected a clause like metadata['key']:'value' at {pos}")
        clauses.append(_clause(match, text, fields))
        pos = match.end()
        if pos == len(text):
            break
        join = _JOIN.match(text, pos)
        if join is None:
            raise _invalid(text, f"expected AND or OR at {pos}")
        joins.add(join.group(1).upper())
        pos = join.end()
    if len(joins) > 1:
        raise _invalid(text, "AND and OR cannot be combined in one query")
    return Query(tuple(clauses), any_of=joins == {"OR"})


def _clause(match: re.Match[str], text: str, fields: frozenset[str]) -> Clause:
    key = match.group("mkey")
    field = "metadata" if key is not None else match.group("field")
    if key is None and field not in fields:
        raise _invalid(text, f"field {field!r} is not searchable here")
    raw = match.group("value")
    value = _ESCAPE.sub(r"\1", raw) if raw is not None else match.group("bare")
    return Clause(
        field=field,
        metadata_key=_ESCAPE.sub(r"\1", key) if key is not None else None,
        value=value,
        negated=match.group("neg") is not None,
    )


def _invalid(text: str, why: str) -> ParamError:
    return ParamError(f"Invalid search query {text!r}: {why}", param="query")
