"""Decode Stripe's bracketed form encoding into nested dicts and lists.

The official SDK flattens nested params as `metadata[k]=v`, `lines[0][period][start]=1`;
lists always carry explicit indices, but `expand[]=x` is accepted too because curl users
write it that way.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

Params = dict[str, Any]


class FormError(ValueError):
    """A key that cannot be decoded, named by `param` as Stripe names it."""

    def __init__(self, message: str, param: str) -> None:
        super().__init__(message)
        self.param = param


def split_key(key: str) -> list[str]:
    """`lines[0][period][start]` -> `["lines", "0", "period", "start"]`."""
    head, bracket, rest = key.partition("[")
    if not head:
        raise FormError(f"Invalid parameter name: {key!r}", key)
    parts = [head]
    while bracket:
        segment, closed, rest = rest.partition("]")
        if not closed:
            raise FormError(f"Unbalanced brackets in parameter name: {key!r}", key)
        parts.append(segment)
        if not rest:
            break
        if not rest.startswith("["):
            raise FormError(f"Invalid parameter name: {key!r}", key)
        rest = rest[1:]
    return parts


def decode_pairs(pairs: list[tuple[str, str]]) -> Params:
    """Build the nested structure; a later scalar for the same key wins, as in Rails."""
    root: dict[str, Any] = {}
    for key, value in pairs:
        parts = split_key(key)
        node = root
        for depth, part in enumerate(parts):
            if part == "":
                part = str(sum(1 for k in node if k.isdigit()))
            last = depth == len(parts) - 1
            if last:
                if isinstance(node.get(part), dict):
                    raise FormError(f"Parameter {key!r} is both a value and a hash", key)
                node[part] = value
                break
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise FormError(f"Parameter {key!r} is both a value and a hash", key)
            node = child
    return _listify(root)


def _listify(node: dict[str, Any]) -> dict[str, Any]:
    for key, value in node.items():
        if isinstance(value, dict):
            node[key] = _as_list_if_indexed(_listify(value))
    return node


def _as_list_if_indexed(node: dict[str, Any]) -> dict[str, Any] | list[Any]:
    # Only a dense 0..n-1 run becomes a list: a metadata hash keyed "7" stays a hash, and a
    # sparse `lines[1]` without `lines[0]` stays a hash that the handler rejects as no array.
    if node and all(k.isdigit() for k in node):
        indices = sorted(int(k) for k in node)
        if indices == list(range(len(node))):
            return [node[str(i)] for i in indices]
    return node


def decode_form(raw: bytes | str) -> Params:
    """Decode an `application/x-www-form-urlencoded` body or query string."""
    try:
        text = raw.decode("utf-8") if isinstance(raw, bytes) else raw
    except UnicodeDecodeError as e:
        raise FormError("The request body is not valid UTF-8", "") from e
    return decode_pairs(parse_qsl(text, keep_blank_values=True))
