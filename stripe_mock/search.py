"""The subset of Stripe's search query language that finds objects by metadata.

Supported: `metadata['key']:'value'` (double quotes too), clauses joined by all-`AND` or
all-`OR` (Stripe does not allow mixing them either). Other fields are refused, not ignored.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from .errors import ParamError

_CLAUSE = re.compile(
    r"""\s*
    metadata\[(?P<mq>['"])(?P<mkey>(?:\\.|(?!(?P=mq)).)*)(?P=mq)\]
    \s*:\s*
    (?P<vq>['"])(?P<value>(?:\\.|(?!(?P=vq)).)*)(?P=vq)
    \s*""",
    re.VERBOSE,
)
_JOIN = re.compile(r"(AND|OR)\s", re.IGNORECASE)
_ESCAPE = re.compile(r"\\(.)")


@dataclass(frozen=True)
class Clause:
    metadata_key: str
    value: str

    def holds(self, metadata: Mapping[str, str]) -> bool:
        return metadata.get(self.metadata_key) == self.value


@dataclass(frozen=True)
class Query:
    clauses: tuple[Clause, ...]
    any_of: bool

    def matches(self, metadata: Mapping[str, str]) -> bool:
        results = (c.holds(metadata) for c in self.clauses)
        return any(results) if self.any_of else all(results)


def parse_query(text: str) -> Query:
    clauses: list[Clause] = []
    joins: set[str] = set()
    pos = 0
    while True:
        match = _CLAUSE.match(text, pos)
        if match is None:
            raise _invalid(text, f"expected a clause like metadata['key']:'value' at {pos}")
        clauses.append(
            Clause(
                metadata_key=_ESCAPE.sub(r"\1", match.group("mkey")),
                value=_ESCAPE.sub(r"\1", match.group("value")),
            )
        )
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


def _invalid(text: str, why: str) -> ParamError:
    return ParamError(f"Invalid search query {text!r}: {why}", param="query")
