"""What one request may cost: fragment bombs, body and document sizes, deep JSON, an exhausted or
silent database, a slow broker. Each refusal is a GraphQL error with a code and a 4xx/503,
never a plain 500, and none of them may stall the event loop for other clients."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from starlette.testclient import TestClient

from gql.core.limits import DEFAULT_LIMITS, DocumentCache, Limits
from settings import Settings
from tests.api_helpers import Api, api_app
from tests.factories import make_invoice, make_org, make_token
from tests.live_server import serve, serve_process


def bomb(levels: int, tag: int = 0) -> str:
    """`fragment Fi on Viewer { ...F(i-1) ...F(i-1) }`: 2^levels fields in ~40 bytes a level.
    `tag` makes each document distinct, as an attacker would, so no cache helps."""
    parts = ["fragment F0 on Viewer { isAdmin scope }"]
    parts += [
        f"fragment F{i} on Viewer {{ ...F{i - 1} ...F{i - 1} }}" for i in range(1, levels + 1)
    ]
    return f"query Bomb{tag} {{ viewer {{ ...F{levels} }} }} " + " ".join(parts)


def codes(body: dict[str, Any]) -> list[str]:
    return [e.get("extensions", {}).get("code") for e in body.get("errors", [])]


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, Any]:
    with committed() as s, s.begin():
        acme = make_org(s, slug="acme")
        return {
            "admin": make_token(s, None, admin=True),
            "draft": make_invoice(s, acme, lines=2).public_id,
        }


@pytest.mark.parametrize("levels", [20, 30])
def test_a_fragment_bomb_is_refused_in_milliseconds_without_a_token(
    api: Api, levels: int, caplog: pytest.LogCaptureFixture
) -> None:
    api.client.get("/healthz")  # the first request of a client pays for its set-up
    caplog.set_level(logging.INFO, logger="billing.api")
    for tag in range(3):
        response = api.client.post("/graphql", json={"query": bomb(levels, tag)})
        body = response.json()
        assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"], body
        assert body["errors"][0]["extensions"]["limit"] == "fields"
    # Server time, from the access log line the middleware writes for each request.
    took = [r.duration_ms for r in caplog.records if getattr(r, "path", None) == "/graphql"]
    assert len(took) == 3
    # The median: on this shared 2-core box (load 10-14) one of three sometimes pays 50-60 ms
    # of scheduling; quiet, each is a few ms. Before: 4 s at 20 levels, minutes at 30.
    assert sorted(took)[1] < 50, took


def test_the_cost_walk_is_linear_in_the_document(monkeypatch: pytest.MonkeyPatch) -> None:
    """The property behind the timings, counted instead of timed: each selection set of the
    document is walked once, however often its fragment is spread (2^30 times at 30 levels)."""
    from graphql import parse

    from gql.core import limits

    walked: list[int] = []
    real = limits._CostWalker.selections

    def counting(self: Any, selection_set: Any) -> Any:
        walked.append(1)
        return real(self, selection_set)

    monkeypatch.setattr(limits._CostWalker, "selections", counting)
    visits = {}
    for levels in (10, 20, 30):
        walked.clear()
        errors = limits.cost_errors(parse(bomb(levels)), DEFAULT_LIMITS)
        assert [e.extensions["limit"] for e in errors if e.extensions] == ["fields"]
        visits[levels] = len(walked)
    # One call per selection set in the text: the operation's and viewer's, F0 .. F(levels),
    # and F0's two leaf fields. Re-walking each spread would be 2^levels.
    assert visits == {n: n + 5 for n in (10, 20, 30)}, visits


def test_healthz_stays_fast_while_20_bombs_arrive_at_once(
    database_url: str, redis_url: str
) -> None:
    async def attack(base: str) -> tuple[list[int], list[float]]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await client.get("/healthz")  # connection warm, schema warm
            bombs = [
                asyncio.create_task(client.post("/graphql", json={"query": bomb(30, tag)}))
                for tag in range(20)
            ]
            health: list[float] = []
            for _ in range(9):
                started = time.perf_counter()
                assert (await client.get("/healthz")).status_code == 200
                health.append(time.perf_counter() - started)
            answers = await asyncio.gather(*bombs)
            return [r.status_code for r in answers], health

    with serve_process(database_url, redis_url) as base:
        statuses, health = asyncio.run(attack(base))
    assert statuses == [200] * 20  # application/json: request errors stay 200, as before
    # Bombs parse in worker threads, so /healthz only waits for the loop's share of each request
    # (~1 ms quiet, ~4 ms at load 12 on this 2-core box). The median is held to 100 ms; the
    # worst probe, which lands behind all twenty connections' set-up, to 2 s. Before: minutes.
    ms = sorted(round(h * 1000) for h in health)
    assert ms[len(ms) // 2] < 100 and ms[-1] < 2000, ms


def test_depth_is_limited_as_documented(api: Api, world: dict[str, Any]) -> None:
    def nested(depth: int) -> str:
        # viewer > organizations > (invoices > nodes > organization)* > slug
        levels = ["viewer", "organizations"]
        while len(levels) < depth - 1:
            levels += ["invoices", "nodes", "organization"]
        levels = levels[: depth - 1]
        return "{ " + " { ".join(levels) + " { slug" + " }" * (len(levels) + 1)

    assert codes(api.gql(nested(DEFAULT_LIMITS.max_depth), world["admin"])) == []
    refused = api.gql(nested(DEFAULT_LIMITS.max_depth + 1), world["admin"])
    assert codes(refused) == ["GRAPHQL_VALIDATION_FAILED"]
    assert refused["errors"][0]["extensions"]["limit"] == "depth"


def test_more_than_20_aliases_are_refused(api: Api, world: dict[str, Any]) -> None:
    query = "{ " + " ".join(f"a{i}: viewer {{ isAdmin }}" for i in range(21)) + " }"
    body = api.gql(query, world["admin"])
    assert codes(body) == ["GRAPHQL_VALIDATION_FAILED"]
    assert body["errors"][0]["extensions"]["limit"] == "aliases"


async def _drive(app: Any, headers: list[tuple[bytes, bytes]], chunks: Iterator[bytes]) -> Any:
    """One POST through the ASGI app with a body produced lazily, chunk by chunk."""
    pulled = 0
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        chunk = next(chunks, None)
        if chunk is None:
            return {"type": "http.disconnect"}
        pulled += 1
        return {"type": "http.request", "body": chunk, "more_body": True}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/graphql",
        "raw_path": b"/graphql",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    await app(scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    body = b"".join(m.get("body", b"") for m in sent if m["type"] == "http.response.body")
    return start["status"], json.loads(body), pulled


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
def test_a_100_mb_body_is_refused_with_413_while_it_is_read(
    database_url: str, redis_url: str, declared: bool
) -> None:
    app = api_app(Settings(database_url=database_url, redis_url=redis_url), lambda _: None)
    megabyte = b"{" + b" " * (1024 * 1024 - 1)
    total = 100

    def chunks() -> Iterator[bytes]:
        for _ in range(total):
            yield megabyte

    headers = [(b"content-length", str(total * len(megabyte)).encode())] if declared else []
    tracemalloc.start()
    try:
        started = time.perf_counter()
        status, body, pulled = asyncio.run(_drive(app, headers, chunks()))
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    app.state.engine.dispose()
    assert status == 413
    assert codes(body) == ["PAYLOAD_TOO_LARGE"]
    # Refused within the first megabytes (the limit is 1 MB), never the whole 100 MB.
    assert pulled <= 2
    assert peak < 10 * 1024 * 1024, f"peak {peak / 1e6:.1f} MB"
    assert elapsed < 1.0


def test_a_document_past_its_byte_limit_is_refused_before_parsing(api: Api) -> None:
    query = "{ viewer { isAdmin } }" + "#" * (DEFAULT_LIMITS.max_document_bytes + 1)
    response = api.client.post("/graphql", json={"query": query})
    assert response.status_code == 413
    assert codes(response.json()) == ["PAYLOAD_TOO_LARGE"]


def test_the_parse_cache_is_bounded_in_bytes() -> None:
    cache = DocumentCache(max_entries=512, max_bytes=100_000)
    for i in range(100):
        cache.get("{ viewer { isAdmin } }" + f"# {i} " + "x" * 10_000, max_tokens=2_000)
    assert cache.size <= 100_000
    assert len(cache.entries) <= 10
    assert cache.size == sum(e.size for e in cache.entries.values())


BAD_BODIES = {
    "not an object": b'"hello"',
    "a list": b"[1, 2]",
    "invalid utf-8": b'{"query": "{ viewer { isAdmin } }", "x": "\xff\xfe"}',
    "not json": b'{"query": ',
    "nested 100,000 deep": b'{"query": "{ __typename }", "variables": {"m": '
    + b"[" * 100_000
    + b"]" * 100_000
    + b"}}",
    "variables nested 2,000 deep": b'{"query": "{ __typename }", "variables": {"m": '
    + b'{"a": ' * 2_000
    + b"1"
    + b"}" * 2_000
    + b"}}",
    "variables 13 deep": b'{"query": "{ __typename }", "variables": {"m": '
    + b"[" * 12
    + b"]" * 12
    + b"}}",
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
def test_every_bad_body_is_a_coded_graphql_error_and_a_4xx(api: Api, name: str) -> None:
    response = api.client.post(
        "/graphql", content=BAD_BODIES[name], headers={"content-type": "application/json"}
    )
    assert 400 <= response.status_code < 500, (response.status_code, response.text[:200])
    body = response.json()
    assert codes(body) in (["BAD_REQUEST"], ["BAD_USER_INPUT"]), body
    assert body["errors"][0]["extensions"]["requestId"] == response.headers["x-request-id"]


def test_an_exhausted_pool_answers_503_with_a_code_and_a_request_id(
    database_url: str, redis_url: str, world: dict[str, Any]
) -> None:
    app = api_app(
        Settings(database_url=database_url, redis_url=redis_url, db_pool_size=1),
        lambda _: None,
        limits=Limits(db_pool_timeout_seconds=0.2),
    )
    engine = app.state.engine
    held = [engine.connect(), engine.connect()]  # pool_size 1 + overflow 1: nothing left
    try:
        with TestClient(app) as client:
            response = client.post(
                "/graphql",
                json={"query": "{ viewer { isAdmin } }"},
                headers={"Authorization": f"Bearer {world['admin']}"},
            )
    finally:
        for conn in held:
            conn.close()
        engine.dispose()
    assert response.status_code == 503
    assert response.headers["retry-after"] == "1"
    error = response.json()["errors"][0]
    assert error["extensions"] == {
        "code": "SERVICE_UNAVAILABLE",
        "requestId": response.headers["x-request-id"],
    }


@pytest.fixture
def silent_database() -> Iterator[str]:
    """A TCP port that accepts connections (the kernel's backlog) and never says a word."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    yield f"postgresql://postgres@127.0.0.1:{sock.getsockname()[1]}/billing"
    sock.close()


def test_a_database_that_never_answers_neither_blocks_start_up_nor_hangs_requests(
    silent_database: str, redis_url: str
) -> None:
    from sync import health  # what cli.py registers for /metrics
    from sync.config import SyncConfig

    settings = Settings(database_url=silent_database, redis_url=redis_url)
    sync_cfg = SyncConfig.from_settings(settings)
    started = time.perf_counter()
    app = api_app(
        settings,
        lambda _: None,
        metrics_collectors=lambda engine, client: [health.SyncCollector(engine, client, sync_cfg)],
        limits=Limits(db_connect_timeout_seconds=1, db_pool_timeout_seconds=1),
    )
    with TestClient(app) as client:
        assert time.perf_counter() - started < 2
        assert client.get("/healthz").status_code == 200
        asked = time.perf_counter()
        response = client.post(
            "/graphql",
            json={"query": "{ viewer { isAdmin } }"},
            headers={"Authorization": "Bearer x"},
        )
        assert time.perf_counter() - asked < 5
    app.state.engine.dispose()
    assert response.status_code == 503
    # A database whose connect times out cannot be reached: not "busy" (issue 20).
    assert codes(response.json()) == ["DATABASE_UNAVAILABLE"]


def test_a_slow_broker_never_blocks_the_event_loop(
    database_url: str, redis_url: str, world: dict[str, Any]
) -> None:
    release = threading.Event()
    enqueued: list[int] = []

    def slow_enqueue(invoice_id: int) -> None:
        release.wait(10)  # Redis unreachable: the client waits for its socket timeout
        enqueued.append(invoice_id)

    app = api_app(
        Settings(database_url=database_url, redis_url=redis_url),
        slow_enqueue,
        limits=Limits(enqueue_timeout_seconds=0.3),
    )
    mutation = "mutation($id: ID!) { finalizeInvoice(input: {invoiceId: $id}) { invoice { status } userErrors { code } } }"

    async def run(base: str) -> tuple[dict[str, Any], float, list[float]]:
        async with httpx.AsyncClient(base_url=base, timeout=30) as client:
            await client.get("/healthz")
            started = time.perf_counter()
            finalize = asyncio.create_task(
                client.post(
                    "/graphql",
                    json={"query": mutation, "variables": {"id": world["draft"]}},
                    headers={"Authorization": f"Bearer {world['admin']}"},
                )
            )
            health: list[float] = []
            while not finalize.done():
                t = time.perf_counter()
                assert (await client.get("/healthz")).status_code == 200
                health.append(time.perf_counter() - t)
            answer = (await finalize).json()
            return answer, time.perf_counter() - started, health

    try:
        with serve(app) as base:
            answer, took, health = asyncio.run(run(base))
    finally:
        release.set()
        app.state.engine.dispose()
    assert answer["data"]["finalizeInvoice"] == {"invoice": {"status": "OPEN"}, "userErrors": []}
    assert took < 3  # answered after the 0.3 s enqueue timeout, not after the broker's
    # The loop stayed free while the enqueue hung (the finalize itself runs on it: < 1 s).
    assert health and max(health) < 1.0, [round(h * 1000) for h in health]


def test_the_settings_defaults_are_the_default_limits() -> None:
    assert Limits.from_settings(Settings()) == DEFAULT_LIMITS
    tighter = Settings.model_validate({"API_MAX_DEPTH": "6", "DB_STATEMENT_TIMEOUT_MS": "500"})
    assert Limits.from_settings(tighter) == Limits(max_depth=6, db_statement_timeout_ms=500)
