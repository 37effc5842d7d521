"""Cursor pagination as Stripe does it: `limit` and `starting_after` for lists (forward only,
as the SDK's auto-paging walks them), `page` tokens for search."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

from .errors import ParamError
from .params import Reader

T = TypeVar("T")

DEFAULT_LIMIT = 10
MAX_LIMIT = 100
PAGINATION_PARAMS = ("limit", "starting_after")


def read_limit(params: Reader) -> int:
    limit = params.int_or_none("limit", minimum=1, maximum=MAX_LIMIT)
    return DEFAULT_LIMIT if limit is None else limit


def cursor_page(
    items: Sequence[T], id_of: Callable[[T], str], params: Reader, *, kind: str
) -> tuple[list[T], bool]:
    """One page of `items` (already in list order) and whether more follow it."""
    limit = read_limit(params)
    after = params.str_or_none("starting_after")
    if after is not None:
        rest = list(items[_position(items, id_of, after, kind) + 1 :])
        return rest[:limit], len(rest) > limit
    return list(items[:limit]), len(items) > limit


def _position(items: Sequence[T], id_of: Callable[[T], str], cursor: str, kind: str) -> int:
    for index, item in enumerate(items):
        if id_of(item) == cursor:
            return index
    raise ParamError(f"No such {kind}: '{cursor}'", param="starting_after", code="resource_missing")


def search_page(items: Sequence[T], params: Reader) -> tuple[list[T], str | None]:
    """One page of search results and the opaque token for the next one, if any."""
    limit = read_limit(params)
    token = params.str_or_none("page")
    offset = 0
    if token is not None:
        try:
            offset = int(token.removeprefix("page_"))
        except ValueError:
            raise ParamError(f"Invalid page token: {token}", param="page") from None
    chunk = list(items[offset : offset + limit])
    more = offset + limit < len(items)
    return chunk, f"page_{offset + limit}" if more else None
