"""API benchmark (`make bench-api`): two workloads under load, with 2 uvicorn workers.

1. The flyctl list: 20 finalized invoices, each with up to 10 line items and its sync state,
   measured with the subtree cache on (the same 20 invoices again and again: the cache answers
   most of it) and off (`API_SUBTREE_CACHE_ENTRIES=0`: what any first look costs).
2. The month so far, which no cache may serve: 200 organizations with a usage draft of 30-100
   lines, each request a different organization's `upcomingInvoice` with its draft lines and
   by-product/app/region groups, while usage keeps arriving (POST /v1/usage in the background).

Each has its ceiling: `schema.execute_sync` of the same response shape on in-memory data, i.e.
what Strawberry costs by itself; on a 2-core machine the server cannot beat 2 cores / that CPU
time. Shares of the ceiling (requests/s, and CPU per request) are what to compare across runs
on a shared machine. Load comes from a separate process on loopback (wrk when installed, else a
small Python client).

    python bench/api.py [--seconds 10] [--connections 16] [--profile stacks.txt] [--port-base N]

With --profile, py-spy samples the one-worker server of the cache-off flyctl run (bench/spy.py
sorts the samples into the README's buckets: ASGI, auth, pool, SQL, rows, graphql-core, JSON,
logging) and the buckets are printed with the result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import psutil
import spy
import strawberry
from common import cli, free_port, fresh_database, server_urls, start, stop, wait_http

from models import organizations, prices
from models.db import make_engine, session_factory, transaction
from models.invoices import lifecycle
from models.invoices.lifecycle import LineInput
from models.tables import LineItemKind, TokenScope
from models.usage import ingest

QUERY = """query Flyctl { invoices(first: 20) { pageInfo { hasNextPage endCursor } nodes {
  id number status periodStart periodEnd total { cents formatted }
  lineItems(first: 10) { nodes { description app region unit quantity unitPrice amount { cents formatted } } }
  syncState { status attempts lastAttemptAt nextAttemptAt lastError { code message } } } } }"""


def seed(database_url: str) -> str:
    factory = session_factory(make_engine(database_url, pool_size=1))
    now = datetime.now(UTC)
    with transaction(factory) as s:
        org = organizations.create(
            s, slug="flyctl-co", name="Flyctl Co", billing_email="b@flyctl.example"
        )
        token, _ = organizations.create_token(
            s, scope=TokenScope.MEMBER, organization=org, name="bench"
        )
    for m in range(40):
        start_day = date(2023 + m // 12, m % 12 + 1, 1)
        end_day = date(start_day.year + (start_day.month == 12), start_day.month % 12 + 1, 1)
        with transaction(factory) as s:
            inv = lifecycle.create_draft(
                s, org, currency="USD", period_start=start_day, period_end=end_day, now=now
            )
            lines = [
                LineInput(
                    kind=LineItemKind.USAGE,
                    description=f"Shared CPU, app-{i}",
                    product="machines-shared-cpu",
                    app=f"app-{i}",
                    region="ams",
                    unit="second",
                    quantity=Decimal("2592000"),
                    unit_price=Decimal("0.000027006173"),
                )
                for i in range(10)
            ]
            lifecycle.add_lines(s, inv, lines, now=now)
            lifecycle.finalize(s, inv, now=now, rollup_shards=16)
    return token


# The same response shape on plain in-memory objects: what Strawberry costs by itself.
@strawberry.type
class M:
    cents: str
    formatted: str


@strawberry.type
class L:
    description: str
    app: str
    region: str
    unit: str
    quantity: str
    unit_price: str
    amount: M


@strawberry.type
class LC:
    nodes: list[L]


@strawberry.type
class E:
    code: str | None
    message: str | None


@strawberry.type
class S:
    status: str
    attempts: int
    last_attempt_at: str | None
    next_attempt_at: str | None
    last_error: E | None


@strawberry.type
class I:  # noqa: E742
    id: str
    number: str
    status: str
    period_start: str
    period_end: str
    total: M
    sync_state: S
    lines: strawberry.Private[list[L]]

    @strawberry.field
    def line_items(self, first: int = 10) -> LC:
        return LC(nodes=self.lines[:first])


@strawberry.type
class P:
    has_next_page: bool
    end_cursor: str | None


@strawberry.type
class C:
    page_info: P
    nodes: list[I]


DATA = [
    I(
        id=f"inv_{n}",
        number=f"FLY-{n:04d}",
        status="OPEN",
        period_start="2026-01-01",
        period_end="2026-02-01",
        total=M(cents="1234", formatted="$12.34"),
        sync_state=S(
            status="SYNCED", attempts=1, last_attempt_at=None, next_attempt_at=None, last_error=None
        ),
        lines=[
            L(
                description="Shared CPU",
                app="web",
                region="ams",
                unit="second",
                quantity="2592000",
                unit_price="0.000027006173",
                amount=M(cents="70", formatted="$0.70"),
            )
            for _ in range(10)
        ],
    )
    for n in range(20)
]


@strawberry.type
class Q:
    @strawberry.field
    def invoices(self, first: int = 20) -> C:
        return C(page_info=P(has_next_page=True, end_cursor="x"), nodes=DATA[:first])


UPCOMING = """query Upcoming($slug: String!) { organization(slug: $slug) { upcomingInvoice {
  asOf total { cents formatted } projectedTotal { cents formatted }
  byProduct { name total { cents formatted } projectedTotal { cents formatted } }
  byApp { name total { cents formatted } projectedTotal { cents formatted } }
  byRegion { name total { cents formatted } projectedTotal { cents formatted } }
  invoice { id status periodStart periodEnd lineItems(first: 100) { nodes {
    description product app region unit quantity unitPrice amount { cents formatted } } } } } } }"""
DRAFT_ORGS = 200
PRODUCTS = {"cpu": ("second", "0.000027006173"), "mem": ("GB-second", "0.000192901235"),
            "egress": ("GB", "2")}  # fmt: skip
REGIONS = ("ams", "iad")


def apps_of(org: int) -> list[str]:
    # 3 products x 2 regions x 5..16 apps: 30 to 96 draft lines per organization.
    return [f"app-{a}" for a in range(5 + org % 12)]


def usage_events(rng: random.Random, orgs: list[int], at: datetime) -> list[dict[str, str]]:
    return [
        {
            "id": uuid.uuid4().hex,
            "organizationSlug": f"up-{org:03d}",
            "product": product,
            "app": app,
            "region": region,
            "quantity": f"{rng.randint(1, 600_000) / 1000}",
            "occurredAt": at.isoformat(),
        }
        for org in orgs
        for product in PRODUCTS
        for app in apps_of(org)
        for region in REGIONS
    ]


def seed_drafts(database_url: str) -> tuple[str, str]:
    """200 organizations with a draft of 30-100 usage lines; (admin token, metering token)."""
    factory = session_factory(make_engine(database_url, pool_size=1))
    now = datetime.now(UTC)
    with transaction(factory) as s:
        for product, (unit, price) in PRODUCTS.items():
            prices.set_price(
                s, product=product, unit=unit, currency="USD", unit_price=price,
                effective_from=now - timedelta(days=40), now=now - timedelta(days=40),
            )  # fmt: skip
        for i in range(DRAFT_ORGS):
            organizations.create(s, slug=f"up-{i:03d}", name=f"Up {i}", billing_email="b@x.io")
        admin, _ = organizations.create_token(
            s, scope=TokenScope.ADMIN, organization=None, name="bench-admin"
        )
        metering, _ = organizations.create_token(
            s, scope=TokenScope.METERING, organization=None, name="bench-metering"
        )
        ingest.ensure_partitions(s, now=now, months_ahead=1)
    rng = random.Random(7)
    for first in range(0, DRAFT_ORGS, 10):
        events = usage_events(rng, list(range(first, first + 10)), now - timedelta(minutes=5))
        with transaction(factory) as s:
            ingest.record_usage(s, [ingest.UsageEventInput.from_json(e) for e in events], now=now)
    return admin, metering


# The month so far's response shape on in-memory objects: its own ceiling.
@strawberry.type
class G:
    name: str | None
    total: M
    projected_total: M


@strawberry.type
class UL:
    description: str
    product: str
    app: str
    region: str
    unit: str
    quantity: str
    unit_price: str
    amount: M


@strawberry.type
class ULC:
    nodes: list[UL]


@strawberry.type
class UI:
    id: str
    status: str
    period_start: str
    period_end: str
    lines: strawberry.Private[list[UL]]

    @strawberry.field
    def line_items(self, first: int = 10) -> ULC:
        return ULC(nodes=self.lines[:first])


@strawberry.type
class U:
    as_of: str
    total: M
    projected_total: M
    by_product: list[G]
    by_app: list[G]
    by_region: list[G]
    invoice: UI


@strawberry.type
class O:  # noqa: E742
    upcoming_invoice: U


def _group(name: str) -> G:
    return G(name=name, total=M(cents="1234", formatted="$12.34"),
             projected_total=M(cents="2345", formatted="$23.45"))  # fmt: skip


UPCOMING_DATA = O(
    upcoming_invoice=U(
        as_of="2026-01-15T10:00:00+00:00",
        total=M(cents="123456", formatted="$1,234.56"),
        projected_total=M(cents="234567", formatted="$2,345.67"),
        by_product=[_group(p) for p in PRODUCTS],
        by_app=[_group(a) for a in apps_of(6)],  # 11 apps: 66 lines, the middle of 30-96
        by_region=[_group(r) for r in REGIONS],
        invoice=UI(
            id="inv_x",
            status="DRAFT",
            period_start="2026-01-01",
            period_end="2026-02-01",
            lines=[
                UL(
                    description=f"{p}, {a}, {r}",
                    product=p,
                    app=a,
                    region=r,
                    unit="second",
                    quantity="2592000",
                    unit_price="0.000027006173",
                    amount=M(cents="70", formatted="$0.70"),
                )
                for p in PRODUCTS
                for a in apps_of(6)
                for r in REGIONS
            ],
        ),
    )
)


@strawberry.type
class QU:
    @strawberry.field
    def organization(self, slug: str) -> O:
        return UPCOMING_DATA


def ceiling_of(schema: strawberry.Schema, query: str, variables: dict[str, Any]) -> float:
    """Median CPU seconds of one execute_sync of the response shape."""
    for _ in range(20):
        assert schema.execute_sync(query, variable_values=variables).errors is None
    samples = []
    for _ in range(200):
        t = time.process_time()
        schema.execute_sync(query, variable_values=variables)
        samples.append(time.process_time() - t)
    return statistics.median(samples)


def strawberry_ceiling() -> float:
    return ceiling_of(strawberry.Schema(query=Q), QUERY.replace("query Flyctl", "query"), {})


def upcoming_ceiling() -> float:
    return ceiling_of(strawberry.Schema(query=QU), UPCOMING, {"slug": "up-000"})


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def single_client(
    url: str, token: str, bodies: list[dict[str, Any]], n: int = 300
) -> tuple[float, float]:
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    with httpx.Client(timeout=10) as client:
        for i in range(30):
            client.post(url, json=bodies[i % len(bodies)], headers=headers)
        for i in range(n):
            t = time.perf_counter()
            r = client.post(url, json=bodies[(i + 30) % len(bodies)], headers=headers)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200 and "errors" not in r.json(), r.text
    return percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000


def wrk_load(
    url: str, token: str, seconds: int, connections: int, bodies: list[dict[str, Any]]
) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    payloads = ",\n".join(
        '"' + json.dumps(b).replace("\\", "\\\\").replace('"', '\\"') + '"' for b in bodies
    )
    script.write_text(
        f"bodies = {{{payloads}}}\ncounter = 0\n"
        f'wrk.method = "POST"\nwrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {token}"\n'
        "request = function()\n  counter = counter + 1\n"
        "  return wrk.format(nil, nil, nil, bodies[(counter % #bodies) + 1])\nend\n"
        "done = function(summary, latency, requests)\n"
        '  io.write(string.format("JSON {\\"rps\\": %f, \\"p50\\": %f, \\"p99\\": %f, \\"errors\\": %d}\\n",'
        " summary.requests / (summary.duration / 1e6), latency:percentile(50) / 1000, latency:percentile(99) / 1000,"
        " summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))\n"
        "end\n"
    )
    out = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    line = next(x for x in out.splitlines() if x.startswith("JSON "))
    result: dict[str, float] = json.loads(line[5:])
    return result


def python_load(
    url: str, token: str, seconds: int, connections: int, bodies: list[dict[str, Any]]
) -> dict[str, float]:
    """Fallback when wrk is missing: threads in this (separate) process; weaker than wrk."""
    times: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()

    def run(n: int) -> None:
        nonlocal errors
        with httpx.Client(timeout=10) as client:
            i = n
            while time.monotonic() < stop_at:
                i += connections
                t = time.perf_counter()
                r = client.post(
                    url, json=bodies[i % len(bodies)], headers={"Authorization": f"Bearer {token}"}
                )
                with lock:
                    times.append(time.perf_counter() - t)
                    errors += r.status_code != 200

    threads = [threading.Thread(target=run, args=(n,)) for n in range(connections)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return {
        "rps": len(times) / seconds,
        "p50": percentile(times, 0.5) * 1000,
        "p99": percentile(times, 0.99) * 1000,
        "errors": errors,
    }


class UsageFeed:
    """Usage keeps arriving during the drafts run: a batch of events for 10 organizations every
    `every` seconds on POST /v1/usage, so drafts change under the readers."""

    def __init__(self, base: str, token: str, every: float = 0.25) -> None:
        self.base, self.token, self.every = base, token, every
        self.done = threading.Event()
        self.batches = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        rng = random.Random(11)
        with httpx.Client(timeout=30, headers={"Authorization": f"Bearer {self.token}"}) as c:
            while not self.done.wait(self.every):
                orgs = rng.sample(range(DRAFT_ORGS), 10)
                events = usage_events(rng, orgs, datetime.now(UTC) - timedelta(seconds=30))
                r = c.post(f"{self.base}/v1/usage", json={"events": events[:1000]})
                self.batches += r.status_code == 200

    def __enter__(self) -> UsageFeed:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()


def measure(
    workers: int,
    database_url: str,
    token: str,
    bodies: list[dict[str, Any]],
    args: argparse.Namespace,
    *,
    port: int,
    env: dict[str, str] | None = None,
    feed_token: str | None = None,
    profile_to: str | None = None,
) -> dict[str, object]:
    _, redis_url = server_urls()
    proc = start(
        cli("serve", "--port", str(port), "--workers", str(workers)),
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url, **(env or {})},
    )
    base = f"http://127.0.0.1:{port}"
    url = f"{base}/graphql"
    feed = UsageFeed(base, feed_token) if feed_token else contextlib.nullcontext()
    try:
        wait_http(f"{base}/healthz", seconds=180)  # imports take long on a loaded box
        time.sleep(1)
        with feed:
            p50, p99 = single_client(url, token, bodies)
            peak: dict[int, int] = {}
            done = threading.Event()

            def procs() -> list[psutil.Process]:
                # With several workers the first process only supervises: measure the workers.
                root = psutil.Process(proc.pid)
                return root.children(recursive=True) if workers > 1 else [root]

            def sample() -> None:
                while not done.is_set():
                    for child in procs():
                        with contextlib.suppress(psutil.Error):
                            peak[child.pid] = max(peak.get(child.pid, 0), child.memory_info().rss)
                    time.sleep(0.2)

            def workers_cpu() -> float:
                return float(sum(p.cpu_times().user + p.cpu_times().system for p in procs()))

            sampler = threading.Thread(target=sample, daemon=True)  # never outlives a failed run
            sampler.start()
            cpu_before = workers_cpu()
            profiler = None
            if profile_to and workers == 1:
                profiler = spy.record(proc.pid, args.seconds, Path(profile_to))
            load = (wrk_load if shutil.which("wrk") else python_load)(
                url, token, args.seconds, args.connections, bodies
            )
            cpu_used = workers_cpu() - cpu_before
            done.set()
            sampler.join()
        profile = None
        if profiler is not None and profile_to:
            profiler.wait(timeout=60)
            profile = spy.buckets(Path(profile_to))
        worker_rss = sorted(peak.values(), reverse=True)[:workers]
        return (
            {
                "workers": workers,
                "single_client_p50_ms": round(p50, 2),
                "single_client_p99_ms": round(p99, 2),
                "load_rps": round(load["rps"], 1),
                "load_p50_ms": round(load["p50"], 2),
                "load_p99_ms": round(load["p99"], 2),
                "load_errors": load["errors"],
                "peak_rss_mb_per_worker": round(max(worker_rss) / 2**20, 1),
                # CPU the server's workers spent per answered request under load: unlike requests/s,
                # barely moved by other processes sharing the cores.
                "server_cpu_ms_per_request": round(
                    1000 * cpu_used / max(1.0, load["rps"] * args.seconds), 2
                ),
                "load_generator": "wrk" if shutil.which("wrk") else "python",
            }
            | ({"usage_batches_during_run": feed.batches} if isinstance(feed, UsageFeed) else {})
            | ({"profile_percent": profile} if profile else {})
        )
    finally:
        stop(proc)


def shares(result: dict[str, object], cpu: float) -> dict[str, object]:
    """The run's figures with its shares of the ceiling (2 cores / Strawberry's CPU)."""
    rps = float(result["load_rps"])  # type: ignore[arg-type]
    server_cpu = float(result["server_cpu_ms_per_request"])  # type: ignore[arg-type]
    return result | {
        "share_of_ceiling": round(rps / (2 / cpu), 2),
        "cpu_share_of_ceiling": round(cpu * 1000 / server_cpu, 2) if server_cpu else None,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2, help="uvicorn workers (2)")
    parser.add_argument("--port-base", type=int, default=0, help="ports from here (default: free)")
    parser.add_argument("--profile", help="also run 1 worker, cache off, under py-spy; stacks here")
    args = parser.parse_args()
    ports = iter(range(args.port_base, args.port_base + 10)) if args.port_base else None

    def port() -> int:
        return next(ports) if ports else free_port()

    database_url = fresh_database(os.environ.get("BENCH_DB", "billing_bench") + "_api")
    token = seed(database_url)
    admin, metering = seed_drafts(database_url)
    flyctl_cpu = strawberry_ceiling()
    upcoming_cpu = upcoming_ceiling()
    flyctl = [{"query": QUERY}]
    drafts = [{"query": UPCOMING, "variables": {"slug": f"up-{i:03d}"}} for i in range(DRAFT_ORGS)]
    off = {"API_SUBTREE_CACHE_ENTRIES": "0"}
    w = args.workers
    cache_on = shares(measure(w, database_url, token, flyctl, args, port=port()), flyctl_cpu)
    cache_off = shares(
        measure(w, database_url, token, flyctl, args, port=port(), env=off), flyctl_cpu
    )
    upcoming = shares(
        measure(w, database_url, admin, drafts, args, port=port(), feed_token=metering),
        upcoming_cpu,
    )
    profiled = None
    if args.profile:
        profiled = measure(
            1, database_url, token, flyctl, args, port=port(), env=off, profile_to=args.profile
        )
    for name, r in (("cache_on", cache_on), ("cache_off", cache_off), ("drafts", upcoming)):
        print(json.dumps({"run": name, **r}), file=sys.stderr)
    summary = {
        "bench": "api",
        "workers": w,
        "strawberry_execute_sync_ms": round(flyctl_cpu * 1000, 2),
        "ceiling_rps_2_cores": round(2 / flyctl_cpu, 1),
        # Targets with the cache off: >= 0.75 of the ceiling, p50 <= 12 ms, RSS < 200 MB.
        "cache_off_share_of_ceiling": cache_off["share_of_ceiling"],
        "cache_off_cpu_share_of_ceiling": cache_off["cpu_share_of_ceiling"],
        "cache_off_rps": cache_off["load_rps"],
        "cache_off_single_client_p50_ms": cache_off["single_client_p50_ms"],
        "cache_off_server_cpu_ms_per_request": cache_off["server_cpu_ms_per_request"],
        "cache_off_peak_rss_mb_per_worker": cache_off["peak_rss_mb_per_worker"],
        # The month so far (no cache can serve it): >= 0.75 of its own ceiling, p50 <= 8 ms.
        "drafts_strawberry_execute_sync_ms": round(upcoming_cpu * 1000, 2),
        "drafts_ceiling_rps_2_cores": round(2 / upcoming_cpu, 1),
        "drafts_rps": upcoming["load_rps"],
        "drafts_share_of_ceiling": upcoming["share_of_ceiling"],
        "drafts_cpu_share_of_ceiling": upcoming["cpu_share_of_ceiling"],
        "drafts_load_p50_ms": upcoming["load_p50_ms"],
        "drafts_load_p99_ms": upcoming["load_p99_ms"],
        "drafts_single_client_p50_ms": upcoming["single_client_p50_ms"],
        "drafts_server_cpu_ms_per_request": upcoming["server_cpu_ms_per_request"],
        "drafts_usage_batches_during_run": upcoming.get("usage_batches_during_run"),
        # Cache on: what the same 20 invoices asked again and again cost (needs the cache).
        "cache_on_share_of_ceiling": cache_on["share_of_ceiling"],
        "cache_on_cpu_share_of_ceiling": cache_on["cpu_share_of_ceiling"],
        "cache_on_rps": cache_on["load_rps"],
        "cache_on_single_client_p50_ms": cache_on["single_client_p50_ms"],
        "load_average_1m": round(os.getloadavg()[0], 2),
    } | (
        {"profile_percent_1_worker_cache_off": profiled.get("profile_percent")} if profiled else {}
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
