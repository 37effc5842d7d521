"""Keyset connections both ways (gql/core/pagination.py): `first`/`after` forward and
`last`/`before` backward on `invoices`, `Organization.invoices` and `Invoice.lineItems`, with
PageInfo as Relay defines it, and the mistakes a client can make answered BAD_USER_INPUT."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token

PAGE = "pageInfo { hasNextPage hasPreviousPage startCursor endCursor } nodes { id }"


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, Any]:
    with committed() as s, s.begin():
        acme = make_org(s, slug="acme")
        ids = [
            make_invoice(
                s, acme, lines=0, period_start=date(2026, m, 1), period_end=date(2026, m + 1, 1)
            ).public_id
            for m in range(1, 8)
        ]
        many = make_invoice(
            s, acme, lines=7, period_start=date(2025, 1, 1), period_end=date(2025, 2, 1)
        )
        return {"member": make_token(s, acme), "ids": ids, "many": many.public_id}


def _invoices(api: Api, token: str, args: str) -> dict[str, Any]:
    result: dict[str, Any] = api.data(
        f'{{ invoices({args}, filter: {{periodFrom: "2026-01-01"}}) {{ {PAGE} }} }}', token
    )["invoices"]
    return result


def _walk(fetch: Any, forward: bool, size: int) -> tuple[list[str], list[dict[str, Any]]]:
    seen: list[str] = []
    infos: list[dict[str, Any]] = []
    cursor: str | None = None
    for _ in range(20):
        if forward:
            args = f"first: {size}" + (f', after: "{cursor}"' if cursor else "")
        else:
            args = f"last: {size}" + (f', before: "{cursor}"' if cursor else "")
        page = fetch(args)
        infos.append(page["pageInfo"])
        ids = [n["id"] for n in page["nodes"]]
        seen = seen + ids if forward else ids + seen
        more = page["pageInfo"]["hasNextPage" if forward else "hasPreviousPage"]
        if not more:
            return seen, infos
        cursor = page["pageInfo"]["endCursor" if forward else "startCursor"]
    raise AssertionError("the walk did not end")


def test_invoices_walk_backward_to_the_same_list(api: Api, world: dict[str, Any]) -> None:
    newest_first = list(reversed(world["ids"]))
    forward, _ = _walk(lambda a: _invoices(api, world["member"], a), True, 3)
    backward, infos = _walk(lambda a: _invoices(api, world["member"], a), False, 3)
    assert forward == newest_first
    assert backward == newest_first
    # The first backward page is the end of the list: nothing after it, more before it.
    assert infos[0]["hasNextPage"] is False and infos[0]["hasPreviousPage"] is True
    assert infos[-1]["hasPreviousPage"] is False and infos[-1]["hasNextPage"] is True


def test_last_alone_is_the_end_of_the_list(api: Api, world: dict[str, Any]) -> None:
    page = _invoices(api, world["member"], "last: 2")
    assert [n["id"] for n in page["nodes"]] == world["ids"][:2][::-1]  # oldest two, in order


def test_after_and_before_bound_a_window(api: Api, world: dict[str, Any]) -> None:
    everything = _invoices(api, world["member"], "first: 7")
    cursors = api.data(
        '{ invoices(first: 7, filter: {periodFrom: "2026-01-01"}) { edges { cursor } } }',
        world["member"],
    )["invoices"]["edges"]
    ids = [n["id"] for n in everything["nodes"]]
    after, before = cursors[1]["cursor"], cursors[5]["cursor"]
    forward = _invoices(api, world["member"], f'first: 10, after: "{after}", before: "{before}"')
    backward = _invoices(api, world["member"], f'last: 2, after: "{after}", before: "{before}"')
    assert [n["id"] for n in forward["nodes"]] == ids[2:5]
    assert forward["pageInfo"]["hasNextPage"] is False
    assert [n["id"] for n in backward["nodes"]] == ids[3:5]
    assert backward["pageInfo"]["hasPreviousPage"] is True


def test_organization_invoices_page_backward(api: Api, world: dict[str, Any]) -> None:
    page = api.data(
        f'{{ organization(slug: "acme") {{ invoices(last: 1) {{ {PAGE} }} }} }}', world["member"]
    )["organization"]["invoices"]
    assert [n["id"] for n in page["nodes"]] == [world["many"]]  # the oldest period
    assert page["pageInfo"]["hasPreviousPage"] is True


def test_line_items_page_backward(api: Api, world: dict[str, Any]) -> None:
    def lines(args: str) -> dict[str, Any]:
        result: dict[str, Any] = api.data(
            f'{{ invoice(id: "{world["many"]}") {{ lineItems({args}) {{ {PAGE} }} }} }}',
            world["member"],
        )["invoice"]["lineItems"]
        return result

    forward, _ = _walk(lines, True, 3)
    backward, infos = _walk(lines, False, 3)
    assert len(forward) == 7 and backward == forward
    assert [len(p) for p in (forward,)] == [7]
    assert infos[0]["hasNextPage"] is False


def test_last_zero_answers_an_empty_page_that_says_what_is_there(
    api: Api, world: dict[str, Any]
) -> None:
    page = _invoices(api, world["member"], "last: 0")
    assert page["nodes"] == [] and page["pageInfo"]["startCursor"] is None
    assert page["pageInfo"]["hasPreviousPage"] is True


@pytest.mark.parametrize(
    "args",
    ["first: 2, last: 2", "last: -1", "last: 101", 'last: 2, before: "bm9wZQ"'],
    ids=["first-and-last", "negative", "too-many", "bad-cursor"],
)
def test_paging_mistakes_are_bad_user_input(api: Api, world: dict[str, Any], args: str) -> None:
    body = api.gql(f"{{ invoices({args}) {{ nodes {{ id }} }} }}", world["member"])
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"]
