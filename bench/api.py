"""API benchmark (`make bench-api`): a flyctl-like query under load, for 1 and 2 uvicorn workers.

The query: 20 invoices, each with up to 10 line items and its sync state. Load comes from a
separate process on loopback (wrk when installed, else a small Python client). Also measured:
the ceiling Strawberry itself sets, `schema.execute_sync` of the same response shape on
in-memory data, because on a 2-core machine the server cannot beat 2 cores / that CPU time.

    python bench/api.py [--seconds 10] [--connections 16] [--profile stacks.txt]

With --profile, py-spy samples the one-worker server during its load run (bench/spy.py
sorts the samples into the README's buckets: ASGI, auth, pool, SQL, rows, graphql-core, JSON,
logging) and the buckets are printed with the result.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import httpx
import psutil
import spy
import strawberry
from common import cli, free_port, fresh_database, server_urls, start, stop, wait_http

from models import organizations
from models.db import make_engine, session_factory, transaction
from models.invoices import lifecycle
from models.invoices.lifecycle import LineInput
from models.tables import LineItemKind, TokenScope

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


def strawberry_ceiling() -> float:
    """Median CPU seconds of one execute_sync of the response shape."""
    schema = strawberry.Schema(query=Q)
    query = QUERY.replace("query Flyctl", "query")
    for _ in range(20):
        assert schema.execute_sync(query).errors is None
    samples = []
    for _ in range(200):
        t = time.process_time()
        schema.execute_sync(query)
        samples.append(time.process_time() - t)
    return statistics.median(samples)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def single_client(url: str, token: str, n: int = 300) -> tuple[float, float]:
    headers = {"Authorization": f"Bearer {token}"}
    body = {"query": QUERY}
    times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(30):
            client.post(url, json=body, headers=headers)
        for _ in range(n):
            t = time.perf_counter()
            r = client.post(url, json=body, headers=headers)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200 and "errors" not in r.json()
    return percentile(times, 0.5) * 1000, percentile(times, 0.99) * 1000


def wrk_load(url: str, token: str, seconds: int, connections: int) -> dict[str, float]:
    script = Path(tempfile.mkdtemp()) / "post.lua"
    payload = json.dumps({"query": QUERY}).replace("\\", "\\\\").replace('"', '\\"')
    script.write_text(
        f'wrk.method = "POST"\nwrk.body = "{payload}"\n'
        f'wrk.headers["Content-Type"] = "application/json"\nwrk.headers["Authorization"] = "Bearer {token}"\n'
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
    return json.loads(line[5:])


def python_load(url: str, token: str, seconds: int, connections: int) -> dict[str, float]:
    """Fallback when wrk is missing: threads in this (separate) process; weaker than wrk."""
    times: list[float] = []
    errors = 0
    stop_at = time.monotonic() + seconds
    lock = threading.Lock()

    def run() -> None:
        nonlocal errors
        with httpx.Client(timeout=10) as client:
            while time.monotonic() < stop_at:
                t = time.perf_counter()
                r = client.post(
                    url, json={"query": QUERY}, headers={"Authorization": f"Bearer {token}"}
                )
                with lock:
                    times.append(time.perf_counter() - t)
                    errors += r.status_code != 200

    threads = [threading.Thread(target=run) for _ in range(connections)]
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


def measure(
    workers: int, database_url: str, token: str, args: argparse.Namespace
) -> dict[str, object]:
    port = free_port()
    _, redis_url = server_urls()
    proc = start(
        cli("serve", "--port", str(port), "--workers", str(workers)),
        {"DATABASE_URL": database_url, "REDIS_URL": redis_url},
    )
    url = f"http://127.0.0.1:{port}/graphql"
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        time.sleep(1)
        p50, p99 = single_client(url, token)
        peak: dict[int, int] = {}
        done = threading.Event()

        def sample() -> None:
            # With several workers the first process only supervises: measure the workers.
            root = psutil.Process(proc.pid)
            while not done.is_set():
                for child in root.children(recursive=True) if workers > 1 else [root]:
                    with contextlib.suppress(psutil.Error):
                        peak[child.pid] = max(peak.get(child.pid, 0), child.memory_info().rss)
                time.sleep(0.2)

        def workers_cpu() -> float:
            root = psutil.Process(proc.pid)
            procs = root.children(recursive=True) if workers > 1 else [root]
            return sum(p.cpu_times().user + p.cpu_times().system for p in procs)

        sampler = threading.Thread(target=sample, daemon=True)  # never outlives a failed run
        sampler.start()
        cpu_before = workers_cpu()
        profiler = None
        if args.profile and workers == 1:
            profiler = spy.record(proc.pid, args.seconds, Path(args.profile))
        load = (wrk_load if shutil.which("wrk") else python_load)(
            url, token, args.seconds, args.connections
        )
        cpu_used = workers_cpu() - cpu_before
        done.set()
        sampler.join()
        profile = None
        if profiler is not None:
            profiler.wait(timeout=60)
            profile = spy.buckets(Path(args.profile))
        worker_rss = sorted(peak.values(), reverse=True)[:workers]
        return {
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
        } | ({"profile_percent": profile} if profile else {})
    finally:
        stop(proc)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", default="1,2", help="worker counts to measure (1,2)")
    parser.add_argument("--profile", help="write py-spy stacks of the 1-worker run here")
    args = parser.parse_args()
    database_url = fresh_database(os.environ.get("BENCH_DB", "billing_bench") + "_api")
    token = seed(database_url)
    cpu = strawberry_ceiling()
    ceiling_rps = 2 / cpu  # two cores, each spending `cpu` seconds per request in Strawberry alone
    results = [measure(int(w), database_url, token, args) for w in args.workers.split(",")]
    for r in results:
        print(json.dumps(r), file=sys.stderr)
    two = results[-1]
    summary = {
        "bench": "api",
        "strawberry_execute_sync_ms": round(cpu * 1000, 2),
        "ceiling_rps_2_cores": round(ceiling_rps, 1),
        "one_worker": results[0],
        "two_workers": two,
        "two_workers_share_of_ceiling": round(float(two["load_rps"]) / ceiling_rps, 2),  # type: ignore[arg-type]
        # The same share in CPU: Strawberry's in-memory execution over the server's CPU per
        # request (1.0: the server costs what Strawberry alone costs). Robust to shared cores.
        "cpu_share_of_ceiling": round(cpu * 1000 / float(two["server_cpu_ms_per_request"]), 2),  # type: ignore[arg-type]
        "load_average_1m": round(os.getloadavg()[0], 2),
    }
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
