"""Chaos benchmark of the Stripe sync (`make bench-sync`).

Real PostgreSQL, real Redis, two real `celery worker` processes plus beat, and the mock Stripe
over HTTP with faults: 10% 500s, 5% 429s, 5% timeouts, 2% lost responses, and an idempotency TTL
of a few seconds so that retries outlive their keys. One worker is killed with SIGKILL twice and
restarted. The run ends when every invoice is SYNCED or FAILED; then Stripe's side (the mock's
admin API) is compared with ours and one JSON line is printed. A second phase answers every
request with 401 and shows the circuit breaker: calls stop, and resume when the fault is lifted.

    python bench/sync.py [--invoices 2000] [--big 5] [--skip-outage]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal

import httpx
import sqlalchemy as sa
from common import ROOT, cli, free_port, fresh_database, server_urls, start, stop, wait_http

from models import invoices, organizations
from models.db import make_engine, session_factory, transaction
from models.invoices import LineInput
from models.tables import LineItemKind
from sync.grouping import STRIPE_MAX_LINES

FAULTS = [
    {"endpoint": "*", "fault": "error_500", "probability": 0.10},
    {"endpoint": "*", "fault": "rate_limit", "probability": 0.05, "retry_after": 1},
    {"endpoint": "*", "fault": "timeout", "probability": 0.05, "seconds": 1.5},
    {"endpoint": "*", "fault": "lost_response", "probability": 0.02},
]
PRODUCTS = ["machines-shared-cpu", "machines-performance-cpu", "egress", "volume-storage", "ipv4"]
REGIONS = ["ams", "fra", "lhr", "iad", "ord", "sjc", "nrt", "sin", "syd", "gru", "jnb", "bom"]
LOG_DIR = ROOT / "bench" / "out"


def make_invoices(database_url: str, *, count: int, big: int, seed: int) -> list[int]:
    rng = random.Random(seed)
    factory = session_factory(make_engine(database_url, pool_size=2))
    now = datetime.now(UTC)
    ids: list[int] = []
    with transaction(factory) as s:
        orgs = [
            organizations.create(
                s, slug=f"chaos-{i:03d}", name=f"Chaos {i}", billing_email=f"b{i}@chaos.example"
            )
            for i in range(50)
        ]
    sizes = [rng.randint(1, 120) for _ in range(count)] + [
        rng.randint(300, 1000) for _ in range(big)
    ]
    for n, size in enumerate(sizes):
        with transaction(factory) as s:
            org = orgs[n % len(orgs)]
            inv = invoices.create_draft(
                s,
                org,
                currency="USD",
                period_start=date(2026, 10, 1),
                period_end=date(2026, 11, 1),
                now=now,
            )
            lines = [
                LineInput(
                    kind=LineItemKind.USAGE,
                    description=f"usage {i}",
                    product=rng.choice(PRODUCTS),
                    region=rng.choice(REGIONS),
                    app=f"app-{i % 7}",
                    unit="second",
                    quantity=Decimal(rng.randint(1, 3_000_000)),
                    unit_price=Decimal("0.0000268") * rng.randint(1, 400),
                )
                for i in range(size)
            ]
            invoices.add_lines(s, inv, lines, now=now)
            ids.append(invoices.finalize(s, inv, now=now, rollup_shards=16).id or 0)
    return ids


def states(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        return Counter(
            dict(
                conn.execute(
                    sa.text("SELECT state, count(*) FROM invoice_sync GROUP BY state")
                ).all()
            )
        )


def expected_lines(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    """public id -> (total, lines Stripe should hold: one per item, or one per group past 250)."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                """
                SELECT i.public_id, i.total_cents, i.line_item_count,
                       (SELECT count(DISTINCT (product, coalesce(region, 'global'))) FROM invoice_items t WHERE t.invoice_id = i.id)
                FROM invoices i
                """
            )
        ).all()
    return {r[0]: (int(r[1]), int(r[2]) if r[2] <= STRIPE_MAX_LINES else int(r[3])) for r in rows}


def compare(mock_url: str, engine: sa.Engine) -> dict[str, int]:
    remote = httpx.get(f"{mock_url}/_mock/invoices", timeout=60).json()["data"]
    by_id: dict[str, list[dict]] = {}
    for inv in remote:
        by_id.setdefault(inv["metadata"].get("invoice_id", "?"), []).append(inv)
    expected = expected_lines(engine)
    duplicates = sum(len(v) - 1 for v in by_id.values())
    missing = sum(1 for pid in expected if pid not in by_id)
    total_mismatch = sum(
        1
        for pid, (total, _) in expected.items()
        if pid in by_id and by_id[pid][0]["total"] != total
    )
    line_mismatch = sum(
        1
        for pid, (_, lines) in expected.items()
        if pid in by_id and by_id[pid][0]["lines"]["total_count"] != lines
    )
    return {
        "duplicates_on_mock": duplicates,
        "missing_on_mock": missing,
        "total_mismatches": total_mismatch,
        "line_mismatches": line_mismatch,
    }


def chaos(args: argparse.Namespace) -> dict[str, object]:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    database_url = fresh_database("billing_bench_sync")
    _, redis_url = server_urls()
    engine = make_engine(database_url, pool_size=2)
    print(f"creating {args.invoices} + {args.big} invoices...", file=sys.stderr)
    t0 = time.monotonic()
    make_invoices(database_url, count=args.invoices, big=args.big, seed=7)
    print(f"  done in {time.monotonic() - t0:.0f}s", file=sys.stderr)

    port = free_port()
    mock_url = f"http://127.0.0.1:{port}"
    queue = f"bench-sync-{port}"
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "STRIPE_API_BASE": mock_url,
        "BILLING_SYNC_QUEUE": queue,
        "STRIPE_RATE_LIMIT": str(args.rate),
        "STRIPE_TIMEOUT": "5",
        "SYNC_BACKOFF_BASE": "0.5",
        "SYNC_BACKOFF_CAP": "8",
        "SYNC_MAX_ATTEMPTS": "12",
        "SYNC_SWEEP_EVERY": "1",
        "SYNC_LEASE_SECONDS": "30",
        "SYNC_BREAKER_SECONDS": "3",
        "BILLING_LOCAL_DIR": str(LOG_DIR / "state"),
    }
    faults = json.dumps({"rules": FAULTS, "idempotency_ttl_seconds": 4, "seed": 42})
    procs = {
        "mock": start(
            cli("mock-stripe", "--port", str(port), "--faults", faults),
            env,
            log=LOG_DIR / "mock.log",
        )
    }
    wait_http(f"{mock_url}/_mock/stats")
    worker_argv = [
        sys.executable,
        "-m",
        "celery",
        "-A",
        "sync.celery_app",
        "worker",
        "-Q",
        queue,
        "-c",
        "4",
        "--loglevel=WARNING",
    ]
    procs["w1"] = start([*worker_argv, "-n", f"w1-{port}@%h"], env, log=LOG_DIR / "worker1.log")
    procs["w2"] = start([*worker_argv, "-n", f"w2-{port}@%h"], env, log=LOG_DIR / "worker2.log")
    procs["beat"] = start(
        [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "sync.celery_app",
            "beat",
            "--loglevel=WARNING",
            "-s",
            str(LOG_DIR / f"beat-{port}"),
        ],
        env,
        log=LOG_DIR / "beat.log",
    )
    started = time.monotonic()
    kills = 0
    try:
        while True:
            time.sleep(1)
            elapsed = time.monotonic() - started
            if kills < 2 and elapsed > 15 * (kills + 1):
                stop(
                    procs["w1"], kill=True
                )  # SIGKILL mid-flight: acks_late gives its messages back
                procs["w1"] = start(
                    [*worker_argv, "-n", f"w1-{port}-{kills}@%h"], env, log=LOG_DIR / "worker1.log"
                )
                kills += 1
                print(
                    f"  {elapsed:.0f}s: killed worker 1 with SIGKILL and restarted it",
                    file=sys.stderr,
                )
            s = states(engine)
            if int(elapsed) % 10 == 0:
                print(f"  {elapsed:.0f}s: {dict(s)}", file=sys.stderr)
            if s["synced"] + s["failed"] == sum(s.values()) or elapsed > args.timeout:
                break
        elapsed = time.monotonic() - started
        s = states(engine)
        stats = httpx.get(f"{mock_url}/_mock/stats").json()
        result: dict[str, object] = {
            "bench": "sync-chaos",
            "invoices": sum(s.values()),
            "synced": s["synced"],
            "failed": s["failed"],
            **compare(mock_url, engine),
            "stripe_calls": stats["total"],
            "calls_per_invoice": round(stats["total"] / max(1, sum(s.values())), 2),
            "worker_kills": kills,
            "elapsed_seconds": round(elapsed, 1),
            "throughput_per_second": round(s["synced"] / elapsed, 1),
        }
        if not args.skip_outage:
            result["outage"] = outage(engine, mock_url, database_url)
        return result
    finally:
        for proc in procs.values():
            stop(proc)


def outage(engine: sa.Engine, mock_url: str, database_url: str) -> dict[str, object]:
    """Every call answers 401: the breaker must stop all calls after the first failures."""
    httpx.delete(f"{mock_url}/_mock/faults")
    httpx.post(
        f"{mock_url}/_mock/faults",
        json={"rules": [{"endpoint": "*", "fault": "auth_error", "probability": 1.0}]},
    )
    before = httpx.get(f"{mock_url}/_mock/stats").json()["total"]
    make_invoices_more(database_url, 100)
    time.sleep(5)
    first = httpx.get(f"{mock_url}/_mock/stats").json()["total"] - before
    time.sleep(20)
    during = httpx.get(f"{mock_url}/_mock/stats").json()["total"] - before - first
    outage_states = sa.text(
        "SELECT s.state, count(*) FROM invoice_sync s JOIN invoices i ON i.id = s.invoice_id"
        " JOIN organizations o ON o.id = i.organization_id WHERE o.slug LIKE 'outage-%' GROUP BY s.state"
    )
    with engine.connect() as conn:
        while_open: dict[str, int] = dict(conn.execute(outage_states).all())  # type: ignore[arg-type]
    httpx.delete(f"{mock_url}/_mock/faults")
    lifted = time.monotonic()
    after: dict[str, int] = {}
    while time.monotonic() - lifted < 120:
        with engine.connect() as conn:
            after = dict(conn.execute(outage_states).all())  # type: ignore[arg-type]
        if after.get("synced", 0) + after.get("failed", 0) == sum(after.values()):
            break
        time.sleep(1)
    return {
        "invoices": sum(after.values()),
        "calls_in_first_5s": first,
        "calls_in_next_20s_while_open": during,
        "states_while_open": while_open,
        "failed_by_outage": after.get("failed", 0),
        "synced_after_lift": after.get("synced", 0),
        "seconds_to_resume_and_drain": round(time.monotonic() - lifted, 1),
    }


def make_invoices_more(database_url: str, count: int) -> None:
    factory = session_factory(make_engine(database_url, pool_size=1))
    now = datetime.now(UTC)
    with transaction(factory) as s:
        org = organizations.create(
            s, slug=f"outage-{int(time.time())}", name="Outage", billing_email="o@x.example"
        )
    for _ in range(count):
        with transaction(factory) as s:
            inv = invoices.create_draft(
                s,
                org,
                currency="USD",
                period_start=date(2026, 10, 1),
                period_end=date(2026, 11, 1),
                now=now,
            )
            invoices.add_lines(
                s,
                inv,
                [
                    LineInput(
                        kind=LineItemKind.USAGE,
                        description="cpu",
                        product="machines-shared-cpu",
                        unit="second",
                        quantity=Decimal(1000),
                        unit_price=Decimal("0.5"),
                    )
                ],
                now=now,
            )
            invoices.finalize(s, inv, now=now, rollup_shards=16)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--big", type=int, default=5)
    parser.add_argument(
        "--rate", type=float, default=300.0, help="Stripe calls per second for the fleet"
    )
    parser.add_argument("--timeout", type=float, default=540.0)
    parser.add_argument("--skip-outage", action="store_true")
    result = chaos(parser.parse_args())
    print(json.dumps(result))


if __name__ == "__main__":
    main()
