"""Usage ingestion benchmark (`make bench-usage`): POST /v1/usage under load, prints one JSON line.

2 API workers (uvicorn) and PostgreSQL on this machine, load from a separate process, batches of
1,000 events, `--connections` (6) clients, 2% of each batch re-sent from earlier batches
(duplicates), `--seconds` (60) per workload:

- partitioned: each batch covers 10 organizations, its events share one timestamp (a pipeline
  that partitions its stream by organization);
- mixed: each batch spread over all 200 organizations x 30 line keys (3 products x 5 apps x 2
  regions), each event its own timestamp within the month so far (a pipeline that batches
  whatever arrived);
- hot: 80% of the events for one organization, from 8 clients (no deadlock, no lost increment);
- graphql: recordUsage on the mixed workload.

Also measured in the same run: the ceiling (a plain COPY of as many events into a copy of
usage_events and their ids into a copy of usage_event_ids), the API workers' peak RSS, the
database's wait events sampled from pg_stat_activity during each workload, `usage verify`
(must be empty), the ids stored against the events the clients were told were accepted (no
lost increment), and an in-process profile of record_usage on mixed batches.

    python bench/usage.py [--seconds 60] [--connections 6]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
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
import sqlalchemy as sa
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


def make_batch(
    rng: random.Random, resend: list[dict[str, Any]], shape: str
) -> list[dict[str, Any]]:
    now = datetime.now(UTC)
    month_so_far = int((now - now.replace(day=1, hour=0, minute=0, second=0)).total_seconds())
    at = now - timedelta(seconds=rng.randint(0, 3600))
    if shape == "partitioned":
        orgs = rng.sample(range(ORGS), ORGS_PER_BATCH)
    elif shape == "hot":
        orgs = [0] * 4 + [rng.randrange(1, ORGS)]  # 80% for org-000
    else:
        orgs = list(range(ORGS))
    events = []
    n_dup = int(BATCH * 0.02) if len(resend) >= BATCH else 0
    for _ in range(BATCH - n_dup):
        if shape != "partitioned":
            at = now - timedelta(seconds=rng.randint(60, max(61, month_so_far - 60)),
                                 microseconds=rng.randint(0, 999_999))  # fmt: skip
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


def load(
    url: str, token: str, seconds: float, connections: int, graphql: bool, shape: str, seed: int
) -> dict[str, Any]:
    """The load generator (run in its own process by main)."""
    latencies: list[float] = []
    counts = {"accepted": 0, "duplicates": 0, "rejected": 0, "errors": 0, "sent": 0}
    lock = threading.Lock()
    deadline = time.monotonic() + seconds
    mutation = "mutation($input: RecordUsageInput!) { recordUsage(input: $input) { accepted duplicates userErrors { code } } }"

    def worker(n: int) -> None:
        rng = random.Random(seed * 100 + n)
        resend: list[dict[str, Any]] = []
        with httpx.Client(timeout=60, headers={"Authorization": f"Bearer {token}"}) as c:
            while time.monotonic() < deadline:
                batch = make_batch(rng, resend, shape)
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
    """Events/s of the least that storing each event once with a forever-unique id costs: a
    plain COPY of mixed-shape events into a copy of usage_events and of their ids into a copy
    of usage_event_ids (same columns, indexes and partitioning, no triggers), one transaction
    per 1,000 events, rolled back so nothing is left behind."""
    now = datetime.now(UTC)
    with psycopg.connect(database_url) as conn:
        org_ids = [r[0] for r in conn.execute("SELECT id FROM organizations")]
        conn.execute("CREATE TEMP TABLE ce (LIKE usage_events INCLUDING ALL)")
        conn.execute("CREATE TEMP TABLE ci (LIKE usage_event_ids INCLUDING ALL)")
        conn.commit()
        rng = random.Random(7)
        data = [
            (rng.choice(org_ids), f"copy-{i}", now - timedelta(seconds=rng.randint(0, 3600)),
             now.date().replace(day=1), rng.choice(list(PRODUCTS)), rng.choice(APPS),
             rng.choice(REGIONS), rng.randint(1, 600_000) / 1000, 1, 0, "{}", now)
            for i in range(rows)
        ]  # fmt: skip
        started = time.perf_counter()
        for start in range(0, rows, BATCH):
            part = data[start : start + BATCH]
            with conn.cursor() as cur:
                with cur.copy(
                    "COPY ce (organization_id, event_id, occurred_at, period_start, product, "
                    "app, region, quantity, price_id, invoice_id, metadata, received_at) "
                    "FROM STDIN"
                ) as copy:
                    for row in part:
                        copy.write_row(row)
                with cur.copy(
                    "COPY ci (organization_id, event_id, payload_sha256, occurred_at, "
                    "received_at) FROM STDIN"
                ) as copy:
                    for row in part:
                        copy.write_row((row[0], row[1], b"x" * 32, row[2], row[11]))
            conn.commit()
        return rows / (time.perf_counter() - started)


class WaitSampler:
    """pg_stat_activity of the bench database every 0.2 s: what its active backends wait on
    (a lock, I/O, the client...) as shares of the samples."""

    def __init__(self, database_url: str) -> None:
        self.url = database_url
        self.counts: dict[str, int] = {}
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            while not self.stop.wait(0.2):
                for state, kind, event in conn.execute(
                    "SELECT state, wait_event_type, wait_event FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid() "
                    "AND backend_type = 'client backend'"
                ):
                    if state == "idle":
                        key = "idle"
                    elif state == "idle in transaction":
                        key = "idle in transaction (waiting on the API)"
                    else:
                        key = f"{kind}:{event}" if kind else "on CPU"
                    self.counts[key] = self.counts.get(key, 0) + 1

    def __enter__(self) -> WaitSampler:
        self.thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop.set()
        self.thread.join()

    def shares(self) -> dict[str, float]:
        busy = {k: v for k, v in self.counts.items() if k != "idle"}
        total = sum(busy.values()) or 1
        top = sorted(busy.items(), key=lambda kv: -kv[1])[:6]
        return {k: round(v / total, 3) for k, v in top}


def profile(database_url: str) -> list[str]:
    """Where record_usage spends its time, in process, for 10 batches of 1,000."""
    factory = session_factory(make_engine(database_url, pool_size=1))
    rng = random.Random(99)
    resend: list[dict[str, Any]] = []
    batches = [
        [ingest.UsageEventInput.from_json(e) for e in make_batch(rng, resend, "mixed")]
        for _ in range(10)
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

    load_before = list(os.getloadavg())
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
        results: dict[str, Any] = {}
        workloads = (
            ("partitioned", "/v1/usage", args.connections, False),
            ("mixed", "/v1/usage", args.connections, False),
            ("hot", "/v1/usage", 8, False),
            ("graphql_mixed", "/graphql", args.connections, True),
        )
        for seed_, (name, path, connections, graphql) in enumerate(workloads):
            spec = {"url": f"http://127.0.0.1:{port}{path}", "token": token,
                    "seconds": args.seconds, "connections": connections, "graphql": graphql,
                    "shape": "mixed" if name == "graphql_mixed" else name, "seed": seed_}  # fmt: skip
            with WaitSampler(database_url) as waits:
                out = subprocess.run(
                    [sys.executable, __file__, "--load", json.dumps(spec)],
                    capture_output=True, text=True, check=True,
                )  # fmt: skip
            results[name] = json.loads(out.stdout.strip().splitlines()[-1])
            results[name]["db_waits"] = waits.shares()
        stop_sampling.set()
    finally:
        stop(api)
    deadlocks = log.read_text().count("deadlock detected") if log.exists() else 0
    factory = session_factory(make_engine(database_url, pool_size=1))
    with transaction(factory) as s:
        diffs = verify.verify(s)
        stored_ids = s.execute(sa.text("SELECT count(*) FROM usage_event_ids")).scalar_one()
    told_accepted = sum(r["accepted"] for r in results.values())
    ceiling = copy_ceiling(database_url, 100_000)
    where = profile(database_url)
    part, mixed, hot, gql = (results[k] for k in ("partitioned", "mixed", "hot", "graphql_mixed"))
    for r in results.values():
        r["share_of_ceiling"] = round(r["events_per_s"] / ceiling, 3)
    line = {
        "bench": "usage",
        "seconds_per_workload": args.seconds,
        "load_average_before": load_before,
        "load_average_after": list(os.getloadavg()),
        **results,
        "copy_ceiling_events_per_s": round(ceiling),
        "peak_rss_mb_per_worker": sorted(round(v, 1) for v in peak_rss.values()),
        "verify_differences": len(diffs),
        "ids_stored_vs_accepted": [stored_ids, told_accepted],
        "deadlocks": deadlocks,
        "targets": {
            "mixed_events_per_s>=20000": mixed["events_per_s"] >= 20_000,
            "mixed_p99_ms<=300": (mixed["p99_ms"] or 1e9) <= 300,
            "partitioned_events_per_s>=40000": part["events_per_s"] >= 40_000,
            "partitioned_p99_ms<=250": (part["p99_ms"] or 1e9) <= 250,
            "graphql_mixed_events_per_s>=10000": gql["events_per_s"] >= 10_000,
            "hot_no_errors_no_deadlock": hot["errors"] == 0 and deadlocks == 0,
            "no_lost_increment": stored_ids == told_accepted,
            "rss_mb<300": all(v < 300 for v in peak_rss.values()),
            "verify_empty": not diffs,
        },
        "profile_top_tottime": where,
    }
    print(json.dumps(line))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
