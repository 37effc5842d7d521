"""Memory is bounded whatever clients send: a worker's RSS must not grow with the size or the
variety of request variables (the subtree cache once kept their text in its keys, ~1 MB a
request with 500 KB variables). Against a real server process, measured with psutil."""

from __future__ import annotations

import secrets

import httpx
import psutil
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from tests.factories import make_invoice, make_org, make_token
from tests.live_server import serve_process_with_pid

QUERY = """query($a: String) { invoice(id: "%s") { lineItems(first: 100) { nodes { description } } }
  prices(product: $a) { id } }"""


def test_large_unrelated_variables_do_not_grow_the_worker(
    committed: sessionmaker[Session], database_url: str, redis_url: str
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="acme")
        token = make_token(s, org)
        invoice = make_invoice(s, org, status="open", lines=100)
        number = invoice.number
    assert number is not None
    query = QUERY % number
    headers = {"Authorization": f"Bearer {token}"}
    with (
        serve_process_with_pid(database_url, redis_url) as (base, pid),
        httpx.Client(base_url=base, timeout=60) as client,
    ):
        worker = psutil.Process(pid)

        def send() -> None:
            # 500 KB of fresh text each time: no two requests share their variables.
            a = secrets.token_hex(250_000)
            r = client.post(
                "/graphql", json={"query": query, "variables": {"a": a}}, headers=headers
            )
            assert r.status_code == 200, r.text
            body = r.json()
            assert "errors" not in body, body
            assert len(body["data"]["invoice"]["lineItems"]["nodes"]) == 100

        for _ in range(20):  # warm: imports, pools, allocator arenas
            send()
        before = worker.memory_info().rss
        for _ in range(300):
            send()
        grown = worker.memory_info().rss - before
    assert grown < 20 * 2**20, f"the worker grew by {grown / 2**20:.1f} MB"
