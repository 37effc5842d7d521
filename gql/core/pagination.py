"""Keyset pagination, both ways: opaque cursors over (sort key, id), never offsets.

A cursor names a row; `after` keeps what follows it in the list's order, `before` what precedes
it, and `first` / `last` take a page from the front or the back of what is left (Relay's
algorithm). Rows inserted meanwhile cannot shift a page boundary, so a walk in either direction
sees every row that existed when it started exactly once. A backward page is read with the
order reversed (the same index, scanned the other way) and turned back before it is answered.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Generic, TypeVar

import strawberry

from gql.core.errors import bad_input

MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20
T = TypeVar("T")

FIRST = "Rows from the front of the list (after `after`); 20 when neither first nor last is given; 0 to 100."
AFTER = "Only rows after this cursor (an endCursor), for the next page."
LAST = (
    "Rows from the back of the list (before `before`), in list order; 0 to 100. Not with `first`."
)
BEFORE = "Only rows before this cursor (a startCursor), for the previous page."


# The four arguments of every connection field, described once.
First = Annotated[int | None, strawberry.argument(description=FIRST)]
After = Annotated[str | None, strawberry.argument(description=AFTER)]
Last = Annotated[int | None, strawberry.argument(description=LAST)]
Before = Annotated[str | None, strawberry.argument(description=BEFORE)]


def _check_size(name: str, size: int) -> int:
    if size < 0 or size > MAX_PAGE_SIZE:
        raise bad_input(f"{name} must be between 0 and {MAX_PAGE_SIZE}, got {size}")
    return size


@dataclass(frozen=True, slots=True)
class Window:
    """What a connection was asked for: `size` rows from the front (or, `backward`, the back)
    of the rows between the cursors."""

    size: int
    backward: bool
    after: str | None
    before: str | None


def window(first: int | None, after: str | None, last: int | None, before: str | None) -> Window:
    if first is not None and last is not None:
        raise bad_input("pass first or last, not both")
    if last is not None:
        return Window(_check_size("last", last), True, after, before)
    size = DEFAULT_PAGE_SIZE if first is None else _check_size("first", first)
    return Window(size, False, after, before)


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
        description="Paging with `first`: true when rows follow this page (with `first: 0`, when "
        "any row exists). With `last`: true when the page was asked `before` a cursor."
    )
    has_previous_page: bool = strawberry.field(
        description="Paging with `last`: true when rows precede this page (with `last: 0`, when "
        "any row exists). With `first`: true when the page was asked `after` a cursor."
    )
    start_cursor: str | None = strawberry.field(
        description="Pass as `before` to get the previous page; null on an empty page."
    )
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` to get the next page; null on an empty page (`first: 0` "
        "included: ask for at least one row to walk the list)."
    )


def page(rows: list[T], w: Window) -> tuple[list[T], bool]:
    """From `size + 1` rows read in the window's direction: the page in list order, and
    whether more rows lie beyond it in that direction."""
    more = len(rows) > w.size
    kept = rows[: w.size]
    return (kept[::-1] if w.backward else kept), more


def page_info(cursors: list[str], *, more: bool, w: Window) -> PageInfo:
    return PageInfo(
        has_next_page=(w.before is not None) if w.backward else more,
        has_previous_page=more if w.backward else (w.after is not None),
        start_cursor=cursors[0] if cursors else None,
        end_cursor=cursors[-1] if cursors else None,
    )


@strawberry.type(description="One row of a page, with its cursor.")
class Edge(Generic[T]):
    cursor: str = strawberry.field(description="Opaque position of this row.")
    node: T = strawberry.field(description="The row.")
