"""The request path's work, counted (not timed): SQL round trips of the flyctl list, the reuse
of finalized invoices' line items (same answers, fewer queries), and the bound on the GraphQL
threads (past it: 503 at once, not an unbounded queue)."""

from __future__ import annotations

import asyncio
import resource
import threading
from collections.abc import Callable
from datetime import date, timedelta
from typing import TypeVar

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select
from starlette.testclient import TestClient

from gql.core.context import Context
from gql.core.executor import BoundedExecutor, Saturated
from gql.core.limits import Limits
from gql.core.subtree_cache import SubtreeCache
from models import tables
from models.invoices import lifecycle
from settings import Settings
from tests.api_helpers import Api, QueryCounter, api_app
from tests.conftest import truncate_all
from tests.factories import NOW, make_invoice, make_org, make_token, usage_line

T = TypeVar("T")

# bench/api.py's query: 20 invoices x 10 lines + sync state.
FLYCTL = """query Flyctl { invoices(first: 20) { pageInfo { hasNextPage endCursor } nodes {
  id number status periodStart periodEnd total { cents formatted }
  lineItems(first: 10) { nodes { description app region unit quantity unitPrice amount { cents formatted } } }
  syncState { status attempts lastAttemptAt nextAttemptAt lastError { code message } } } } }"""

EVERY_LINE_FIELD = """query($first: Int!) { invoices(first: 30) { nodes { id status
  lineItems(first: $first) { totalCount pageInfo { hasNextPage endCursor startCursor }
    edges { cursor node { id kind description product app region unit quantity unitPrice
      amount { cents currency formatted } periodStart periodEnd metadata } } } } } }"""


def _app(settings: Settings, **limits: int) -> TestClient:
    return TestClient(api_app(settings, lambda _: None, limits=Limits(**limits)))


@pytest.fixture
def settings(database_url: str, redis_url: str) -> Settings:
    return Settings(database_url=database_url, redis_url=redis_url)


@pytest.fixture
def flyctl_org(committed: sessionmaker[Session]) -> str:
    with committed() as s, s.begin():
        org = make_org(s, slug="flyctl")
        for m in range(22):
            start = date(2024 + m // 12, m % 12 + 1, 1)
            end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
            make_invoice(s, org, status="open", lines=12, period_start=start, period_end=end)
        make_invoice(s, org, status="draft", lines=2, period_start=date(2026, 1, 1))
        token = make_token(s, org)
    return token


def test_the_flyctl_list_costs_four_round_trips_then_two(
    settings: Settings, flyctl_org: str
) -> None:
    with _app(settings) as client:
        api = Api(client=client)
        engine = client.app.state.engine  # type: ignore[attr-defined]
        with QueryCounter(engine) as cold:
            first = api.data(FLYCTL, flyctl_org)
        with QueryCounter(engine) as warm:
            second = api.data(FLYCTL, flyctl_org)
    assert first == second
    nodes = first["invoices"]["nodes"]
    assert len(nodes) == 20 and all(len(n["lineItems"]["nodes"]) == 10 for n in nodes[1:])
    # Cold: the token, the page, the draft's lines, the other lines of the page (one query for
    # all 19), the sync states of the page.
    assert len(cold.statements) == 5, cold.statements
    assert sum("api_tokens" in s for s in cold.statements) == 1
    # Warm: the token is cached (5 s) and the finalized invoices' lines are reused: only the
    # draft's lines are read again.
    assert len(warm.statements) == 3, warm.statements
    assert not any("api_tokens" in s for s in warm.statements)
    assert sum("invoice_items" in s for s in warm.statements) == 1


def test_a_page_without_drafts_costs_two_round_trips_once_warm(
    settings: Settings, flyctl_org: str
) -> None:
    after_the_draft = FLYCTL.replace(
        "invoices(first: 20)", "invoices(first: 20, filter: {status: [OPEN]})"
    )
    with _app(settings) as client:
        api = Api(client=client)
        engine = client.app.state.engine  # type: ignore[attr-defined]
        with QueryCounter(engine) as cold:
            api.data(after_the_draft, flyctl_org)
        with QueryCounter(engine) as warm:
            api.data(after_the_draft, flyctl_org)
    assert len(cold.statements) == 4, cold.statements  # token, page, lines, sync states
    assert len(warm.statements) == 2, warm.statements  # page, sync states


OTHER_SELECTIONS = [
    "{ invoices(first: 30) { nodes { lineItems(first: 10) { nodes { id } } } } }",
    """{ invoices(first: 30) { nodes { a: lineItems(first: 2) { nodes { ...L } }
        b: lineItems(first: 4) { nodes { id ...L } } } } } fragment L on LineItem { unit }""",
    """{ invoices(first: 30) { nodes { a: lineItems(first: 2) { nodes { ...L } }
        b: lineItems(first: 4) { nodes { id ...L } } } } } fragment L on LineItem { app }""",
]


def test_reused_line_items_answer_exactly_as_fresh_ones(
    settings: Settings, flyctl_org: str
) -> None:
    """Same answers from the cache, whatever the arguments, aliases, fragments or selection."""
    with _app(settings) as cached, _app(settings, subtree_cache_entries=0) as fresh:
        for first in (3, 10, 20):
            a = Api(client=cached).data(EVERY_LINE_FIELD, flyctl_org, first=first)
            b = Api(client=cached).data(EVERY_LINE_FIELD, flyctl_org, first=first)
            c = Api(client=fresh).data(EVERY_LINE_FIELD, flyctl_org, first=first)
            assert a == b == c
        for query in OTHER_SELECTIONS * 2:
            assert Api(client=cached).data(query, flyctl_org) == Api(client=fresh).data(
                query, flyctl_org
            )


def test_a_draft_s_new_line_shows_on_the_next_request(
    settings: Settings, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="drafty")
        token = make_token(s, org)
        draft = make_invoice(s, org, status="draft", lines=1)
    query = "{ invoices(first: 5) { nodes { lineItems(first: 10) { nodes { quantity } } } } }"
    with _app(settings) as client:
        api = Api(client=client)
        before = api.data(query, token)["invoices"]["nodes"][0]["lineItems"]["nodes"]
        with committed() as s, s.begin():
            row = s.merge(draft)
            lifecycle.add_lines(s, row, [usage_line(quantity="7")], now=NOW + timedelta(1))
        after = api.data(query, token)["invoices"]["nodes"][0]["lineItems"]["nodes"]
    assert len(before) == 1 and len(after) == 2


def test_the_executor_queues_up_to_its_bound_then_refuses() -> None:
    executor = BoundedExecutor(threads=1, queue=1)
    gate = threading.Event()

    async def scenario() -> list[str]:
        running = [asyncio.ensure_future(executor.run(gate.wait)) for _ in range(2)]
        await asyncio.sleep(0)
        with pytest.raises(Saturated):
            await executor.run(lambda: True)
        gate.set()
        await asyncio.gather(*running)
        return ["ok" for _ in running]

    assert asyncio.run(scenario()) == ["ok", "ok"]
    assert executor.in_flight == 0
    executor.shutdown()


def test_a_saturated_api_answers_503_with_a_code_at_once(
    settings: Settings, flyctl_org: str
) -> None:
    with _app(settings, graphql_threads=1, graphql_queue=0) as client:
        executor: BoundedExecutor = client.app.state.graphql.executor  # type: ignore[attr-defined]
        gate = threading.Event()
        holder = threading.Thread(target=lambda: asyncio.run(executor.run(gate.wait)))
        holder.start()
        try:
            while executor.in_flight == 0:  # the one thread is taken (counting, not timing)
                threading.Event().wait(0.01)
            response = client.post(
                "/graphql",
                json={"query": "{ viewer { isAdmin } }"},
                headers={"Authorization": f"Bearer {flyctl_org}"},
            )
        finally:
            gate.set()
            holder.join()
        assert response.status_code == 503
        assert response.headers["retry-after"] == "1"
        assert response.json()["errors"][0]["extensions"]["code"] == "SERVICE_UNAVAILABLE"
        ok = client.post(
            "/graphql",
            json={"query": "{ viewer { isAdmin } }"},
            headers={"Authorization": f"Bearer {flyctl_org}"},
        )
        assert ok.status_code == 200 and ok.json()["data"]["viewer"]["isAdmin"] is False


def test_a_reused_serial_id_never_matches_an_old_subtree(
    settings: Settings, committed: sessionmaker[Session], engine: object
) -> None:
    """TRUNCATE ... RESTART IDENTITY (the tests; a restore) gives a new invoice an old id."""
    query = "{ invoices(first: 5) { nodes { lineItems(first: 10) { nodes { quantity } } } } }"
    with _app(settings) as client:
        api = Api(client=client)
        answers = []
        for lines in (1, 3):
            with committed() as s, s.begin():
                org = make_org(s, slug="reused")
                token = make_token(s, org)
                make_invoice(s, org, status="open", lines=lines)
            nodes = api.data(query, token)["invoices"]["nodes"]
            answers.append(len(nodes[0]["lineItems"]["nodes"]))
            truncate_all(engine)  # type: ignore[arg-type]
    assert answers == [1, 3]


SUMMARY = """query($years: [Int!]!) { monthlySummary(years: $years) { month year monthOfYear
  currency invoiceCount subtotal { cents currency formatted } total { cents formatted } }
  organization(slug: "flyctl") { monthlySummary(years: $years) { month invoiceCount
    total { cents } } } }"""


def _summary_cache(client: TestClient) -> SubtreeCache:
    graphql_app = next(r for r in client.app.routes if getattr(r, "path", "") == "/graphql")  # type: ignore[attr-defined]
    cache: SubtreeCache = graphql_app.app.app.schema.execution_context_class.subtree_cache
    return cache


def test_monthly_summary_answers_from_its_cache_exactly_as_fresh(
    settings: Settings, flyctl_org: str
) -> None:
    """The completed list is reused only for the same rollup figures (they are in its key), so
    a hit is the fresh answer by construction; the test checks it field by field anyway."""
    with _app(settings) as cached, _app(settings, subtree_cache_entries=0) as fresh:
        for years in ([2024], [2024, 2025], [2025, 2026]):
            a = Api(client=cached).data(SUMMARY, flyctl_org, years=years)
            hits = _summary_cache(cached).hits
            b = Api(client=cached).data(SUMMARY, flyctl_org, years=years)
            assert _summary_cache(cached).hits == hits + 2  # both monthlySummary fields
            c = Api(client=fresh).data(SUMMARY, flyctl_org, years=years)
            assert a == b == c


def test_a_finalize_shows_in_the_next_cached_summary(
    settings: Settings, committed: sessionmaker[Session], flyctl_org: str
) -> None:
    with _app(settings) as client:
        api = Api(client=client)
        before = api.data(SUMMARY, flyctl_org, years=[2026])["monthlySummary"]
        with committed() as s, s.begin():
            org = s.exec(
                select(tables.Organization).where(tables.Organization.slug == "flyctl")
            ).one()
            make_invoice(
                s,
                org,
                status="open",
                lines=1,
                period_start=date(2026, 5, 1),
                period_end=date(2026, 6, 1),
            )
        after = api.data(SUMMARY, flyctl_org, years=[2026])["monthlySummary"]
    may = next(i for i, m in enumerate(before) if m["month"] == "2026-05")
    assert after[may]["invoiceCount"] == before[may]["invoiceCount"] + 1


def _padded(depth: int, fn: Callable[[], T]) -> T:
    return fn() if depth == 0 else _padded(depth - 1, fn)


def test_an_operation_never_maps_and_unmaps_interpreter_stack_per_field(
    settings: Settings, flyctl_org: str
) -> None:
    """CPython (3.11+) keeps frames on a per-thread stack of 16 KB chunks and frees a chunk
    as soon as its first frame returns, so an execution whose depth keeps crossing a chunk
    boundary pays an mmap, a munmap and page faults per field call (two thirds of the flyctl
    list's CPU, found with strace). The executor runs each operation at the start of a roomy
    chunk; here the operation is started at many depths, and none may fault per field."""
    with _app(settings, subtree_cache_entries=0) as client:
        graphql = client.app.state.graphql  # type: ignore[attr-defined]
        executor: BoundedExecutor = graphql.executor
        schema = graphql.schema
        viewer = Api(client=client).data("{ viewer { isAdmin } }", flyctl_org)
        assert viewer == {"viewer": {"isAdmin": False}}
        viewer_of_token = next(iter(graphql.tokens.entries.values()))[1]

        def operation() -> int:
            session = graphql.sessions()
            try:
                context = Context(
                    session=session,
                    viewer_or_none=viewer_of_token,
                    enqueue_sync=lambda _: None,
                    rollup_shards=16,
                    request_id="t",
                )
                before = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt
                result = schema.execute_sync(FLYCTL, context_value=context)
                faults = resource.getrusage(resource.RUSAGE_THREAD).ru_minflt - before
                assert result.errors is None, result.errors
                return faults
            finally:
                session.close()

        async def at(depth: int) -> int:
            return await executor.run(lambda: _padded(depth, operation))

        asyncio.run(at(0))  # first use: the pool's connection, psycopg's type caches
        faults = {depth: asyncio.run(at(depth)) for depth in range(0, 400, 12)}
    # A thrashing run faults thousands of times (4 pages per field); a clean one a few dozen.
    assert max(faults.values()) < 300, faults


def _equivalence_queries(open_number: str, draft_id: str) -> list[tuple[str, dict[str, object]]]:
    lines = "nodes { id description quantity unitPrice amount { cents currency formatted } }"
    return [
        (f'{{ invoice(id: "{open_number}") {{ lineItems(first: 5) {{ {lines} }} }} }}', {}),
        (f'{{ invoice(id: "{draft_id}") {{ status lineItems(first: 5) {{ {lines} }} }} }}', {}),
        (
            """query($n: Int!, $m: Int!, $unused: String) { invoices(first: 30) { nodes {
              a: lineItems(first: $n) { totalCount nodes { ...L } }
              b: lineItems(first: $m) { edges { cursor node { ...L app } } } } }
              prices(product: $unused) { id } }
            fragment L on LineItem { id unit quantity amount { cents } }""",
            {"n": 2, "m": 4, "unused": "x" * 5000},
        ),
        (
            """query($n: Int!) { invoices(first: 30) { nodes { lineItems(first: $n) {
              nodes { ... on LineItem { description } metadata } pageInfo { endCursor } } } } }""",
            {"n": 3},
        ),
        (
            """{ x: invoices(first: 3) { nodes { lineItems(last: 2) { nodes { id } } } }
                 y: invoices(first: 3) { nodes { lineItems(first: 2) { nodes { id } } } } }""",
            {},
        ),
        (
            """{ organization(slug: "flyctl") { upcomingInvoice { total { cents } byProduct { name }
              invoice { status lineItems(first: 50) { nodes { quantity amount { cents } } } } } } }""",
            {},
        ),
    ]


def test_cache_on_and_off_answer_the_same(
    settings: Settings, committed: sessionmaker[Session], flyctl_org: str
) -> None:
    """Aliases, fragments, arguments from variables (and an unrelated large one), drafts and
    finalized invoices: each query twice with the cache on (cold, then warm) and once off."""
    with committed() as s:
        invoices = s.exec(select(tables.Invoice).order_by(col(tables.Invoice.id))).all()
        open_number = next(i.number for i in invoices if i.number)
        draft_id = next(i.public_id for i in invoices if i.status == tables.InvoiceStatus.DRAFT)
    assert open_number is not None
    with _app(settings) as cached, _app(settings, subtree_cache_entries=0) as fresh:
        for query, variables in _equivalence_queries(open_number, draft_id) * 2:
            a = Api(client=cached).gql(query, flyctl_org, **variables)
            b = Api(client=cached).gql(query, flyctl_org, **variables)
            c = Api(client=fresh).gql(query, flyctl_org, **variables)
            assert "errors" not in a, a
            assert a == b == c
        assert _summary_cache(cached).hits > 0
        assert _summary_cache(fresh).hits == 0


def test_the_cache_keeps_to_its_byte_budget_and_keys_on_digests(
    settings: Settings, flyctl_org: str
) -> None:
    query = "query($n: Int!) { invoices(first: 30) { nodes { lineItems(first: $n) { nodes { id description } } } } }"
    with _app(settings, subtree_cache_bytes=60_000) as client:
        cache = _summary_cache(client)
        for n in range(1, 13):
            Api(client=client).data(query, flyctl_org, n=n)
        assert 0 < cache.bytes <= 60_000
        assert all(isinstance(k, bytes) and len(k) == 16 for k in cache.entries)
        metrics = client.get("/metrics").text
    hits = [
        line for line in metrics.splitlines() if line.startswith("billing_graphql_subtree_cache_")
    ]
    assert any(line.startswith("billing_graphql_subtree_cache_misses_total") for line in hits)
    assert any(line.startswith("billing_graphql_subtree_cache_bytes") for line in hits)


def test_unrelated_variables_share_one_entry(settings: Settings, flyctl_org: str) -> None:
    """The key holds only the variables the cached subtree reads: a client sending different
    large unrelated variables each time reuses one entry per invoice, never adds one."""
    query = """query($a: String) { invoices(first: 30, filter: {status: [OPEN]}) {
      nodes { lineItems(first: 3) { nodes { id } } } } prices(product: $a) { id } }"""
    with _app(settings) as client:
        cache = _summary_cache(client)
        cache.clear()  # the default schema's cache lives as long as the process
        misses = cache.misses
        for i in range(5):
            Api(client=client).data(query, flyctl_org, a=f"{i}" * 100_000)
        assert len(cache.entries) == 22  # the open invoices
        assert cache.misses - misses == 22
