"""The close's sync at Stripe's rate limit (`make bench-close-sync`): one JSON line.

After a month-end close, every new invoice waits for Stripe at once. Here: N (5,000) finalized
invoices, one per organization (so each also needs its Stripe customer), written with COPY into
their own database (`billing_bench_close_sync`, or `$BENCH_CLOSE_SYNC_DB`) as the close leaves
them (OPEN, numbered, one PENDING outbox row each). Then real `billing worker` processes
(3 x concurrency 4) and `billing beat` (its sweeper enqueues the due rows, as after a close
whose enqueues were lost) sync them to the mock Stripe in its own process, with the fleet's
limiter at RATE requests/s and the mock enforcing Stripe's own RATE/s over a sliding second.

Reported: the sustained Stripe call rate as a share of the limit (steady state: from 10% to 90%
of the calls; and first call to last), 429s we caused (the mock's rate limit, target 0), the
busiest second the mock saw, calls per invoice, wall time, and whether every invoice is on the
mock exactly once with its total.

`run()` has no side effects at import and returns the dict (bench/close.py prints both parts);
`main()` prints it.

    python bench/close_sync.py [--invoices 5000] [--rate 200] [--workers 3]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import time
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import httpx
import psycopg
from common import (
    ROOT,
    cli,
    copy_text,
    free_port,
    fresh_database,
    log,
    server_urls,
    start,
    stop,
    wait_http,
)

from models.money import line_amount_cents

PERIOD = date(2026, 2, 1)
PERIOD_END = date(2026, 3, 1)
# (product, unit, unit price in cents, quantity): four lines and a support plan, so one
# add_lines call per invoice (STRIPE_LINES_CHUNK is 50).
LINES = [
    ("machines-shared-cpu", "second", Decimal("0.000027006173"), 2_592_000),
    ("egress", "GB", Decimal(2), 120),
    ("volume-storage", "GB-month", Decimal(15), 10),
    ("ipv4", "month", Decimal(200), 1),
    ("support-plan", "month", Decimal(2900), 1),
]
OUT = ROOT / "bench" / "out"


def generate(url: str, n: int) -> float:
    """N organizations with one finalized invoice each, as the close leaves them: drafts and
    their lines by COPY (the line trigger admits lines on drafts only), then one UPDATE to OPEN
    with number and due date, and one PENDING outbox row each."""
    started = time.perf_counter()
    at = datetime.now(UTC)
    orgs, invs, items = io.StringIO(), io.StringIO(), io.StringIO()
    item = 0
    for i in range(1, n + 1):
        orgs.write(f"{i}\torg_cs{i:08x}\tcs{i}\tClose sync {i}\tap@cs{i}.example\tCS{i}\tUSD\n")
        total = 0
        for product, unit, price, quantity in LINES:
            q = Decimal(quantity + i % 97)
            amount = line_amount_cents(q, price)
            total += amount
            item += 1
            items.write(
                f"li_cs{item:012x}\t{i}\tusage\t{product}\t{product}\tweb\tams\t{unit}\t{q}\t"
                f"{price}\t{amount}\t{PERIOD}\t{PERIOD_END}\n"
            )
        invs.write(
            f"{i}\tinv_cs{i:012x}\t{i}\tdraft\tUSD\t{PERIOD}\t{PERIOD_END}\t{total}\t{total}\t"
            f"{len(LINES)}\n"
        )
    with psycopg.connect(url) as conn:
        copy_text(conn, "COPY organizations (id, public_id, slug, name, billing_email, "
              "invoice_prefix, default_currency) FROM STDIN", orgs)  # fmt: skip
        copy_text(conn, "COPY invoices (id, public_id, organization_id, status, currency, "
              "period_start, period_end, subtotal_cents, total_cents, line_item_count) FROM STDIN",
              invs)  # fmt: skip
        copy_text(conn, "COPY invoice_items (public_id, invoice_id, kind, description, product, app, "
              "region, unit, quantity, unit_price, amount_cents, period_start, period_end) "
              "FROM STDIN", items)  # fmt: skip
        conn.execute(
            "UPDATE invoices i SET status = 'open', number = o.invoice_prefix || '-0001', "
            "finalized_at = %s, due_date = %s FROM organizations o WHERE o.id = i.organization_id",
            (at, at.date() + timedelta(days=14)),
        )
        conn.execute(
            "INSERT INTO invoice_sync (invoice_id, state, next_attempt_at, created_at) "
            "SELECT id, 'pending', %s, %s FROM invoices",
            (at, at),
        )
        for table in ("organizations", "invoices"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        conn.execute("ANALYZE")
    return time.perf_counter() - started


def states(url: str) -> Counter[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT state, count(*) FROM invoice_sync GROUP BY state").fetchall()
    return Counter({str(state): int(k) for state, k in rows})


def steady_rate(samples: list[tuple[float, int]], low: float = 0.1, high: float = 0.9) -> float:
    """Calls per second between the samples where the count passed `low` and `high` of the
    final count: the rate while every worker had work, without start-up and the last stragglers."""
    final = samples[-1][1]
    a = next(s for s in samples if s[1] >= final * low)
    b = next(s for s in samples if s[1] >= final * high)
    return (b[1] - a[1]) / max(1e-9, b[0] - a[0])


def first_to_last_rate(samples: list[tuple[float, int]]) -> float:
    final = samples[-1][1]
    first = next(s for s in samples if s[1] > 0)
    last = next(s for s in samples if s[1] == final)
    return (final - first[1]) / max(1e-9, last[0] - first[0])


def on_mock(mock_url: str, url: str) -> dict[str, int]:
    remote = httpx.get(f"{mock_url}/_mock/invoices", timeout=120).json()["data"]
    by_id = Counter(inv["metadata"].get("invoice_id") for inv in remote)
    totals = {inv["metadata"].get("invoice_id"): inv["total"] for inv in remote}
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT public_id, total_cents FROM invoices").fetchall()
    ours: dict[str, int] = {str(pid): int(t) for pid, t in rows}
    customers = httpx.get(f"{mock_url}/_mock/customers", timeout=120).json()["data"]
    per_org = Counter(c["metadata"].get("org_id") for c in customers)
    return {
        "on_mock": len(by_id),
        "duplicates_on_mock": sum(k - 1 for k in by_id.values()),
        "missing_on_mock": sum(1 for pid in ours if pid not in by_id),
        "total_mismatches": sum(1 for pid, t in ours.items() if pid in totals and totals[pid] != t),
        "duplicate_customers": sum(k - 1 for k in per_org.values()),
    }


def attempts(url: str) -> dict[str, Any]:
    with psycopg.connect(url) as conn:
        by_code: dict[str, int] = dict(
            conn.execute(
                "SELECT coalesce(error_code, outcome), count(*) FROM sync_attempts "
                "WHERE outcome <> 'ok' GROUP BY 1"
            ).fetchall()
        )
        per_invoice = conn.execute(
            "SELECT max(attempts), avg(attempts)::float FROM invoice_sync"
        ).fetchone()
    assert per_invoice is not None
    return {
        "attempts_not_synced_by_code": by_code,
        "max_attempts_per_invoice": per_invoice[0],
        "mean_attempts_per_invoice": round(per_invoice[1] or 0, 2),
    }


def run(
    n_invoices: int = 5000,
    rate: float = 200,
    *,
    workers: int = 3,
    concurrency: int = 4,
    timeout: float = 900,
) -> dict[str, Any]:
    OUT.mkdir(parents=True, exist_ok=True)
    url = fresh_database(os.environ.get("BENCH_CLOSE_SYNC_DB", "billing_bench_close_sync"))
    gen = generate(url, n_invoices)
    log(f"close-sync: {n_invoices} finalized invoices generated in {gen:.1f}s")
    _, redis_url = server_urls()
    port = free_port()
    mock_url = f"http://127.0.0.1:{port}"
    queue = f"bench-close-sync-{port}"
    env = {
        "DATABASE_URL": url,
        "REDIS_URL": redis_url,
        "STRIPE_API_BASE": mock_url,
        "BILLING_SYNC_QUEUE": queue,
        "STRIPE_RATE_LIMIT": str(rate),
        "SYNC_SWEEP_EVERY": "1",
        # A row waits in the queue up to depth / throughput (2,000 / ~35 per s): not swept again
        # meanwhile, or every message would be sent twice.
        "SYNC_SWEEP_HOLD": "600",
        "SYNC_BACKOFF_BASE": "0.5",
        "SYNC_BACKOFF_CAP": "5",
        "BILLING_LOCAL_DIR": str(OUT / "close-sync-state"),
    }
    mock_settings = json.dumps({"rate_limit_per_second": rate, "webhook_url": None})
    procs = {
        "mock": start(
            cli("mock-stripe", "--port", str(port), "--faults", mock_settings, "--state", "none"),
            env,
            log=OUT / "close-sync-mock.log",
        )
    }
    samples: list[tuple[float, int]] = []
    try:
        wait_http(f"{mock_url}/_mock/stats")
        load_before = os.getloadavg()
        started = time.monotonic()
        for w in range(workers):
            argv = cli("worker", "--concurrency", str(concurrency), "--loglevel=WARNING")
            argv += ["--hostname", f"cs{w}-{port}@%h"]
            procs[f"w{w}"] = start(argv, env, log=OUT / f"close-sync-worker{w}.log")
        beat = cli("beat", "--loglevel=WARNING", "--schedule", str(OUT / f"close-sync-beat-{port}"))
        procs["beat"] = start(beat, env, log=OUT / "close-sync-beat.log")
        last_log = 0.0
        while True:
            total = int(httpx.get(f"{mock_url}/_mock/stats", timeout=30).json()["total"])
            now = time.monotonic() - started
            samples.append((now, total))
            s = states(url)
            if now - last_log >= 15:
                log(f"  {now:5.0f}s {total} calls {dict(s)}")
                last_log = now
            if s["synced"] + s["failed"] == n_invoices or now > timeout:
                break
            time.sleep(0.5)  # sampling the progress, not waiting for an outcome
        wall = time.monotonic() - started
        load_after = os.getloadavg()
        stats = httpx.get(f"{mock_url}/_mock/stats", timeout=30).json()
        samples.append((wall, int(stats["total"])))
        s = states(url)
        steady = steady_rate(samples)
        whole = first_to_last_rate(samples)
        return {
            "bench": "close-sync",
            "invoices": n_invoices,
            "synced": s["synced"],
            "failed": s["failed"],
            "rate_limit_per_second": rate,
            "workers": f"{workers} x concurrency {concurrency}",
            "stripe_calls": stats["total"],
            "calls_per_invoice": round(stats["total"] / n_invoices, 2),
            "steady_calls_per_second": round(steady, 1),
            "steady_share_of_limit": round(steady / rate, 3),
            "first_to_last_calls_per_second": round(whole, 1),
            "first_to_last_share_of_limit": round(whole / rate, 3),
            "target_share": 0.9,
            "peak_calls_in_one_second": stats["peak_in_one_second"],
            "rate_limited_429_by_us": stats["rate_limited"],
            "responses_by_status": dict(
                sum((Counter(v) for v in stats["requests"].values()), Counter())
            ),
            "wall_seconds": round(wall, 1),
            "invoices_per_second": round(s["synced"] / wall, 1),
            "generate_seconds": round(gen, 1),
            **on_mock(mock_url, url),
            **attempts(url),
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in load_after],
            "cores": os.cpu_count(),
        }
    finally:
        for proc in procs.values():
            stop(proc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--invoices", type=int, default=5000)
    ap.add_argument("--rate", type=float, default=200)
    ap.add_argument("--workers", type=int, default=3)
    ap.add_argument("--concurrency", type=int, default=4)
    args = ap.parse_args()
    result = run(args.invoices, args.rate, workers=args.workers, concurrency=args.concurrency)
    print(json.dumps(result, default=str), flush=True)
    ok = result["synced"] == args.invoices and not result["duplicates_on_mock"]
    return 0 if ok and result["missing_on_mock"] == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
