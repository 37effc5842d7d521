"""Keyset pagination: opaque cursors over (sort key, id), never offsets.

A cursor names the last row seen; the next page is everything strictly after it in the sort
order. Rows inserted meanwhile cannot shift a page boundary, so a walk sees every row that
existed when it started exactly once.
"""

from __future__ import annotations

import base64
from datetime import date
from typing import Generic, TypeVar

import strawberry

from gql.core.errors import bad_input

MAX_PAGE_SIZE = 100
T = TypeVar("T")


def check_first(first: int) -> int:
    if first < 0 or first > MAX_PAGE_SIZE:
        raise bad_input(f"first must be between 0 and {MAX_PAGE_SIZE}, got {first}")
    return first


def _encode(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def _decode(cursor: str) -> str:
    try:
        return base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        raise bad_input("malformed cursor") from None


def invoice_cursor(period_start: date, invoice_id: int) -> str:
    return _encode(f"i:{period_start.isoformat()}:{invoice_id}")


def parse_invoice_cursor(cursor: str) -> tuple[date, int]:
    try:
        kind, day, ident = _decode(cursor).split(":")
        assert kind == "i"
        return date.fromisoformat(day), int(ident)
    except (ValueError, AssertionError):
        raise bad_input("malformed cursor") from None


def id_cursor(row_id: int) -> str:
    return _encode(f"l:{row_id}")


def parse_id_cursor(cursor: str) -> int:
    try:
        kind, ident = _decode(cursor).split(":")
        assert kind == "l"
        return int(ident)
    except (ValueError, AssertionError):
        raise bad_input("malformed cursor") from None


@strawberry.type(description="Where a page starts and ends, and whether there is more (Relay).")
class PageInfo:
    has_next_page: bool = strawberry.field(
        description="True when rows follow this page (with `first: 0`: when any row exists)."
    )
    has_previous_page: bool = strawberry.field(
        description="True when the page was asked `after` a cursor, so rows precede it."
    )
    start_cursor: str | None = strawberry.field(
        description="Cursor of the first row of this page; null on an empty page."
    )
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page; null on an empty page (`first: 0` "
        "included: ask for at least one row to walk the list)."
    )


def page_info(cursors: list[str], *, more: bool, after: str | None) -> PageInfo:
    return PageInfo(
        has_next_page=more,
        has_previous_page=after is not None,
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


@strawberry.type(description="One row of a page, with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque position of this row.")
    node: T = strawberry.field(description="The row.")
