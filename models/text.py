"""The one rule for text we store: names, ids, product codes, descriptions, metadata keys and
values. Every writer (usage ingest, invoice lines, prices) and the lookups of
gql/core/permissions.py apply it, so a value is storable in one place exactly when it is
storable in every other.

A stored text
- is a `str` of at most `limit` characters;
- holds no NUL (PostgreSQL text cannot) and no lone UTF-16 surrogate (PostgreSQL text is UTF-8;
  JSON's "\\ud800" decodes to one, and it cannot be encoded);
- has no leading or trailing whitespace. It is refused with INVALID_VALUE, never stripped: a
  client whose "  x-1 " became "x-1" would see its event counted as a duplicate of another, and
  the stored value would not be what it sent.

Metadata (a JSON object) holds only strings, exact numbers (int or Decimal, finite), booleans,
null, lists and objects; its keys and strings follow the rule above but for whitespace, which is
data there. Floats are refused where exactness matters (the HTTP edge parses numbers as Decimal).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from models.errors import InvalidValue


def problem(value: str) -> str | None:
    """Why `value` cannot be stored as PostgreSQL text (NUL, lone surrogate), or None."""
    if "\x00" in value:
        return "cannot contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "contains a lone UTF-16 surrogate"
    return None


def storable(value: str) -> bool:
    """For lookups: a value that fails the rule names nothing, so it finds nothing."""
    return problem(value) is None


def text(value: Any, name: str, *, required: bool, limit: int) -> str | None:
    """`value` if it follows the rule; None for an absent (None or "") optional value. Raises
    InvalidValue at `name` otherwise."""
    if value is None or value == "":
        if required:
            raise InvalidValue(f"{name} is required", field=(name,))
        return None
    if not isinstance(value, str):
        raise InvalidValue(f"{name} must be a string", field=(name,))
    if len(value) > limit:
        raise InvalidValue(f"{name} is longer than {limit} characters", field=(name,))
    why = problem(value)
    if why is not None:
        raise InvalidValue(f"{name} {why}", field=(name,))
    if value != value.strip():
        raise InvalidValue(f"{name} has leading or trailing whitespace", field=(name,))
    return value


def metadata_problem(value: Mapping[str, Any], *, max_depth: int) -> str | None:
    """Why a metadata object cannot be stored exactly (a key that is not a string, a value of
    no JSON type, NaN or an infinity, NUL or a lone surrogate anywhere, nesting past
    `max_depth`; the object itself is level 1), or None."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, Mapping):
            if depth > max_depth:
                return f"metadata is nested deeper than {max_depth} levels"
            for key, child in item.items():
                if not isinstance(key, str):
                    return "metadata keys must be strings"
                why = problem(key)
                if why is not None:
                    return f"a metadata key {why}"
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            if depth > max_depth:
                return f"metadata is nested deeper than {max_depth} levels"
            stack.extend((c, depth + 1) for c in item)
        elif isinstance(item, str):
            why = problem(item)
            if why is not None:
                return f"a metadata value {why}"
        elif isinstance(item, Decimal):
            if not item.is_finite():
                return "metadata numbers must be finite (no NaN or Infinity)"
        elif isinstance(item, float):
            if item != item or item in (float("inf"), float("-inf")):
                return "metadata numbers must be finite (no NaN or Infinity)"
        elif item is not None and not isinstance(item, bool | int):
            return f"metadata cannot hold a {type(item).__name__}"
    return None
