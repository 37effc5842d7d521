"""Usage ingestion benchmark (`make bench-usage`): POST /v1/usage under load, prints one JSON line.

2 API workers (uvicorn) and PostgreSQL on this machine, load from a separate process: batches
of 1,000 events for 200 organizations x 30 line keys (3 products x 5 apps x 2 regions), 2% of
each batch re-sent from earlier batches (duplicates), for `--seconds` (60). Then recordUsage over
GraphQL for a shorter while, the ceiling (a plain COPY of as many rows into usage_events), the
API workers' peak RSS, `usage verify` (must be empty), and an in-process profile of record_usage
(where the time goes).

    python bench/usage.py [--seconds 60] [--connections 6] [--graphql-seconds 15]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import psutil
import psycopg
from common import cli, free_port, fresh_database, start, stop, wait_http

from models import organizations, prices
from models.db import make_engine, session_factory, transaction
from models.tables import TokenScope
from models.usage import ingest, verify

ORGS = 200
PRODUCTS = {
    "cpu": ("second", "0.000027006173"),
    "mem": ("GB-second", "0.000192901235"),
    "egress": ("GB", "2"),
}
APPS = ["web", "api", "worker", "cron", "db"]
REGIONS = ["ams", "iad"]
BATCH = 1_000
ORGS_PER_BATCH = 10  # a metering pipeline partitions its stream by organization


def seed(database_url: str) -> str:
    factory = session_factory(make_engine(database_url, pool_size=1))
    now = datetime.now(UTC)
    with transaction(factory) as s:
        for product, (unit, price) in PRODUCTS.items():
            prices.set_price(
                s, product=product, unit=unit, currency="USD", unit_price=price,
                effective_from=now - timedelta(days=40), now=now - timedelta(days=40),
            )  # fmt: skip
        for i in range(ORGS):
            organizations.create(
                s, slug=f"org-{i:03d}", name=f"Org {i}", billing_email=f"b@{i}.example"
            )
        token, _ = organizations.create_token(
            s, scope=TokenScope.METERING, organization=None, name="bench"
        )
        ingest.ensure_partitions(s, now=now, months_ahead=1)
    return token


def make_batch(rng: random.Random, resend: list[dict[str, Any]]) -> list[dict[str, Any]]:
    at = datetime.now(UTC) - timedelta(seconds=rng.randint(0, 3600))
    orgs = rng.sample(range(ORGS), ORGS_PER_BATCH)
    events = []
    n_dup = int(BATCH * 0.02) if len(resend) >= BATCH else 0
    for _ in range(BATCH - n_dup):
        events.append(
            {
                "id": uuid.uuid4().hex,
                "organizationSlug": f"org-{rng.choice(orgs):03d}",
                "product": rng.choice(list(PRODUCTS)),
                "app": rng.choice(APPS),
                "region": rng.choice(REGIONS),
                "quantity": f"{rng.randint(1, 600_000) / 1000}",
                "occurredAt": at.isoformat(),
            }
        )
    events += rng.sample(resend, n_dup)
    resend.extend(events[: BATCH // 10])
    del resend[: max(0, len(resend) - 20 * BATCH)]
    return events


def load(url: str, token: str, seconds: float, connections: int, graphql: bool) -> dict[str, Any]:
    """The load generator (run in its own process by main)."""
    latencies: list[float] = []
    counts = {"accepted": 0, "duplicates": 0, "rejected": 0, "errors": 0, "sent": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    mutation = "mutation($input: RecordUsageInput!) { recordUsage(input: $input) { accepted duplicates userErrors { code } } }"

    def worker(n: int) -> None:
        rng = random.Random(n)
        resend: list[dict[str, Any]] = []
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
            while time.monotonic() < deadline:
                batch = make_batch(rng, resend)
                started = time.perf_counter()
                if graphql:
                    r = c.post(
                        url, json={"query": mutation, "variables": {"input": {"events": batch}}}
                    )
                    body = r.json()["data"]["recordUsage"] if r.status_code == 200 else None
                    got = (
                        (body["accepted"], body["duplicates"], len(body["userErrors"]))
                        if body
                        else None
                    )
                else:
                    r = c.post(url, json={"events": batch})
                    body = r.json() if r.status_code == 200 else None
                    got = (
                        (body["accepted"], body["duplicates"], len(body["rejected"]))
                        if body
                        else None
                    )
                elapsed = time.perf_counter() - started
                with lock:
                    counts["sent"] += len(batch)
                    if got is None:
                        counts["errors"] += 1
                        continue
                    latencies.append(elapsed)
                    counts["accepted"] += got[0]
                    counts["duplicates"] += got[1]
                    counts["rejected"] += got[2]

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(connections)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.monotonic() - started
    latencies.sort()
    return {
        **counts,
        "seconds": round(wall, 1),
        "events_per_s": round((counts["accepted"] + counts["duplicates"]) / wall),
        "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
        "p99_ms": round(latencies[int(len(latencies) * 0.99) - 1] * 1000, 1) if latencies else None,
        "requests": len(latencies),
    }


def copy_ceiling(database_url: str, rows: int) -> float:
    """Rows/s of a plain COPY of the same shape into usage_events (invoice 0: outside any draft,
    so verify ignores them)."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        org_ids = [r[0] for r in conn.execute("SELECT id FROM organizations")]
        rng = random.Random(7)
        data = [
            (rng.choice(org_ids), f"copy-{i}", now - timedelta(seconds=rng.randint(0, 3600)),
             now.date().replace(day=1), rng.choice(list(PRODUCTS)), rng.choice(APPS),
             rng.choice(REGIONS), rng.randint(1, 600_000) / 1000, 1, 0, "{}", now)
            for i in range(rows)
        ]  # fmt: skip
        started = time.perf_counter()
        with (
            conn.cursor() as cur,
            cur.copy(
                "COPY usage_events (organization_id, event_id, occurred_at, period_start, product, "
                "app, region, quantity, price_id, invoice_id, metadata, received_at) FROM STDIN"
            ) as copy,
        ):
            for row in data:
                copy.write_row(row)
        conn.commit()
        return rows / (time.perf_counter() - started)


def profile(database_url: str) -> list[str]:
    """Where record_usage spends its time, in process, for 10 batches of 1,000."""
    factory = session_factory(make_engine(database_url, pool_size=1))
    rng = random.Random(99)
    resend: list[dict[str, Any]] = []
    batches = [
        [ingest.UsageEventInput.from_json(e) for e in make_batch(rng, resend)] for _ in range(10)
    ]
    prof = cProfile.Profile()
    prof.enable()
    for b in batches:
        with transaction(factory) as s:
            ingest.record_usage(s, b, now=datetime.now(UTC))
    prof.disable()
    out = io.StringIO()
    stats = pstats.Stats(prof, stream=out)
    stats.sort_stats("tottime").print_stats(8)
    return [ln.strip() for ln in out.getvalue().splitlines() if "/" in ln or "{" in ln][:8]


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=60)
    p.add_argument("--graphql-seconds", type=float, default=15)
    p.add_argument("--connections", type=int, default=6)
    p.add_argument("--load", help=argparse.SUPPRESS)  # internal: run as the load process
    args = p.parse_args()
    if args.load:
        spec = json.loads(args.load)
        print(json.dumps(load(**spec)))
        return 0

    database_url = fresh_database("billing_bench_usage")
    token = seed(database_url)
    port = free_port()
    log = Path(tempfile.gettempdir()) / "bench-usage-api.log"
    api = start(
        cli("serve", "--port", str(port), "--workers", "2"),
        {"DATABASE_URL": database_url, "DB_POOL_SIZE": "8"},
        log=log,
    )
    peak_rss: dict[int, float] = {}
    stop_sampling = threading.Event()

    def sample() -> None:
        while not stop_sampling.wait(0.5):
            try:
                for child in psutil.Process(api.pid).children(recursive=True):
                    rss = child.memory_info().rss / 2**20
                    peak_rss[child.pid] = max(peak_rss.get(child.pid, 0), rss)
            except psutil.Error:
                pass

    try:
        wait_http(f"http://127.0.0.1:{port}/healthz", seconds=60)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        results = {}
        for name, path, seconds, graphql in (
            ("http", "/v1/usage", args.seconds, False),
            ("graphql", "/graphql", args.graphql_seconds, True),
        ):
            spec = {"url": f"http://127.0.0.1:{port}{path}", "token": token, "seconds": seconds,
                    "connections": args.connections, "graphql": graphql}  # fmt: skip
            out = subprocess.run(
                [sys.executable, __file__, "--load", json.dumps(spec)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
        stop_sampling.set()
    finally:
        stop(api)
    factory = session_factory(make_engine(database_url, pool_size=1))
    with transaction(factory) as s:
        diffs = verify.verify(s)
    ceiling = copy_ceiling(database_url, 200_000)
    where = profile(database_url)
    http = results["http"]
    line = {
        "bench": "usage",
        "http": http,
        "graphql": results["graphql"],
        "copy_ceiling_rows_per_s": round(ceiling),
        "share_of_ceiling": round(http["events_per_s"] / ceiling, 3),
        "peak_rss_mb_per_worker": sorted(round(v, 1) for v in peak_rss.values()),
        "verify_differences": len(diffs),
        "targets": {
            "events_per_s>=20000": http["events_per_s"] >= 20_000,
            "p99_ms<=250": (http["p99_ms"] or 1e9) <= 250,
            "rss_mb<300": all(v < 300 for v in peak_rss.values()),
            "graphql_events_per_s>=5000": results["graphql"]["events_per_s"] >= 5_000,
            "verify_empty": not diffs,
        },
        "profile_top_tottime": where,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
