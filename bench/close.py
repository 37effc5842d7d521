"""Month-end close benchmark (`make bench-close`): one JSON line.

Its own database (`billing_bench_close`, or `$BENCH_CLOSE_DB` so that runs side by side do not
drop each other's). N organizations (50,000 by default), each with a
February usage draft of 20 usage lines (written with COPY: the draft rows, the usage_drafts
mapping, the lines and the events behind them, so `usage verify` has something to check) and a
support-plan subscription (the recurring line the close adds). Then two `billing close-period
--period 2026-02` processes start together; closer A is SIGKILLed once half the drafts are
finalized and restarted; the run ends when every closer has exited. Checked after it: every
draft finalized exactly once (one outbox row each), numbers gap-free per organization,
`rollup verify` and `usage verify` empty. Then the second part (bench/close_sync.py): 5,000
finalized invoices synced to the mock by real workers with the limiter at 200 requests/s and
the mock enforcing Stripe's rate: the share of the limit sustained, and 429s caused by us.

    python bench/close.py [--orgs 50000] [--lines 20] [--sync-invoices 5000] [--sync-rate 200]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import time
from datetime import UTC, date, datetime
from decimal import Decimal

import close_sync
import psycopg
import redis
from common import ROOT, copy_text, fresh_database, log, server_urls, start, stop

from models import rollup
from models.db import make_engine, session_factory, transaction
from models.money import line_amount_cents
from models.usage import verify
from sync.sweeper import queue_depth as sweeper_depth

FEB = date(2026, 2, 1)
PRODUCTS = ["machines-shared-cpu", "egress", "volume-storage", "ipv4"]
REGIONS = ["ams", "fra", "iad", "sin", "syd"]
UNIT = {
    "machines-shared-cpu": "second",
    "egress": "GB",
    "volume-storage": "GB-month",
    "ipv4": "month",
}
PRICE = {
    "machines-shared-cpu": Decimal("0.000027006173"),
    "egress": Decimal(2),
    "volume-storage": Decimal(15),
    "ipv4": Decimal(200),
    "support-plan": Decimal(2900),
}


def generate(url: str, orgs: int, lines: int) -> float:
    started = time.perf_counter()
    at = datetime(2026, 2, 15, 12, tzinfo=UTC)
    with psycopg.connect(url) as conn:
        price_ids = {}
        for product, price in PRICE.items():
            unit = UNIT.get(product, "month")
            price_ids[product] = conn.execute(
                "INSERT INTO prices (product, unit, currency, unit_price, effective_from) "
                "VALUES (%s, %s, 'USD', %s, '2026-01-01') RETURNING id",
                (product, unit, price),
            ).fetchone()[0]  # type: ignore[index]
        o, inv, d, li, ev, sub = (io.StringIO() for _ in range(6))
        line_id = 0
        for n in range(1, orgs + 1):
            o.write(f"{n}\torg_{n:08x}\tb{n}\tOrg {n}\tap@b{n}.example\tB{n}\tUSD\n")
            total = 0
            for k in range(lines):
                product = PRODUCTS[k % len(PRODUCTS)]
                region = REGIONS[(k // len(PRODUCTS)) % len(REGIONS)]
                app = f"app{k // (len(PRODUCTS) * len(REGIONS))}"
                q = Decimal(1000 + (n * 7 + k * 13) % 5000)
                amount = line_amount_cents(q, PRICE[product])
                total += amount
                line_id += 1
                li.write(
                    f"li_{line_id:012x}\t{n}\tusage\t{product}, {app}, {region}\t{product}\t{app}\t"
                    f"{region}\t{UNIT[product]}\t{q}\t{PRICE[product]}\t{amount}\t2026-02-01\t"
                    f"2026-03-01\t{price_ids[product]}\t{at.isoformat()}\t{at.isoformat()}\n"
                )
                ev.write(
                    f"{n}\te{k}\t{at.isoformat()}\t2026-02-01\t{product}\t{app}\t{region}\t{q}\t"
                    f"{price_ids[product]}\t{n}\t{{}}\t{at.isoformat()}\n"
                )
            inv.write(
                f"{n}\tinv_{n:012x}\t{n}\tdraft\tUSD\t2026-02-01\t2026-03-01\t{total}\t{total}\t"
                f"{lines}\n"
            )
            d.write(f"{n}\t2026-02-01\t{n}\n")
            sub.write(f"{n}\tsupport-plan\tSupport plan\t1\t2025-01-01\n")
        copy_text(conn, "COPY organizations (id, public_id, slug, name, billing_email, "
              "invoice_prefix, default_currency) FROM STDIN", o)  # fmt: skip
        copy_text(conn, "COPY invoices (id, public_id, organization_id, status, currency, "
              "period_start, period_end, subtotal_cents, total_cents, line_item_count) FROM STDIN",
              inv)  # fmt: skip
        copy_text(
            conn, "COPY usage_drafts (organization_id, period_start, invoice_id) FROM STDIN", d
        )
        copy_text(conn, "COPY invoice_items (public_id, invoice_id, kind, description, product, app, "
              "region, unit, quantity, unit_price, amount_cents, period_start, period_end, "
              "price_id, first_usage_at, last_usage_at) FROM STDIN", li)  # fmt: skip
        copy_text(conn, "COPY usage_events (organization_id, event_id, occurred_at, period_start, "
              "product, app, region, quantity, price_id, invoice_id, metadata, received_at) "
              "FROM STDIN", ev)  # fmt: skip
        copy_text(conn, "COPY subscriptions (organization_id, product, description, quantity, since) "
              "FROM STDIN", sub)  # fmt: skip
        for table in ("organizations", "invoices"):
            conn.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        conn.execute("ANALYZE")
    return time.perf_counter() - started


def finalized(url: str) -> int:
    with psycopg.connect(url) as conn:
        return int(
            conn.execute("SELECT count(*) FROM invoices WHERE status = 'open'").fetchone()[0]
        )  # type: ignore[index]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--orgs", type=int, default=50_000)
    ap.add_argument("--lines", type=int, default=20)
    # The second part: that many invoices synced to the mock at the limiter's rate (0: skip).
    ap.add_argument("--sync-invoices", type=int, default=5000)
    ap.add_argument("--sync-rate", type=float, default=200)
    args = ap.parse_args()
    url = fresh_database(os.environ.get("BENCH_CLOSE_DB", "billing_bench_close"))
    gen = generate(url, args.orgs, args.lines)
    log(f"generated {args.orgs} drafts x {args.lines} lines in {gen:.1f}s")
    load_before = os.getloadavg()
    # No worker consumes this queue: it only shows how many nudges the closers published (the
    # close caps them at the sweeper's queue depth; the sweeper enqueues the rest later).
    queue = "bench-close-none"
    broker = redis.Redis.from_url(server_urls()[1])
    broker.delete(queue)
    env = {"DATABASE_URL": url, "BILLING_SYNC_QUEUE": queue}
    argv = [sys.executable, str(ROOT / "cli.py"), "close-period", "--period", "2026-02", "--quiet"]
    out = ROOT / "bench" / "out"
    out.mkdir(exist_ok=True)
    started = time.perf_counter()
    a = start(argv, env, log=out / "close-a.log")
    b = start(argv, env, log=out / "close-b.log")
    killed_at = None
    while killed_at is None:
        n = finalized(url)
        if n >= args.orgs // 2:
            stop(a, kill=True)
            killed_at = n
            log(f"SIGKILLed closer A at {n} finalized")
            a = start(argv, env, log=out / "close-a2.log")
        time.sleep(0.2)  # sampling the progress, not waiting for an outcome
    a.wait()
    b.wait()
    seconds = time.perf_counter() - started
    queued = sweeper_depth(broker, queue)
    broker.delete(queue)
    engine = make_engine(url, pool_size=1)
    factory = session_factory(engine)
    with transaction(factory) as s:
        rollup_diffs = len(rollup.verify(s))
        usage_diffs = len(verify.verify(s))
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT (SELECT count(*) FROM invoices WHERE status = 'open'), "
            "(SELECT count(*) FROM invoices WHERE status = 'draft'), "
            "(SELECT count(*) FROM invoice_sync), (SELECT count(DISTINCT invoice_id) FROM invoice_sync), "
            "(SELECT count(*) FROM invoices i JOIN organizations o ON o.id = i.organization_id "
            " WHERE i.number <> o.invoice_prefix || '-0001'), "
            "(SELECT count(*) FROM invoice_items WHERE kind = 'subscription'), "
            "(SELECT row_to_json(r) FROM billing_runs r)"
        ).fetchone()
    assert row is not None
    result = {
        "benchmark": "close",
        "organizations": args.orgs,
        "lines_per_draft": args.lines,
        "generate_seconds": round(gen, 1),
        "close_seconds": round(seconds, 1),
        "invoices_per_second": round(row[0] / seconds, 1),
        "target": "<= 120 s, >= 400 invoices/s",
        "closers": 2,
        "killed_at_finalized": killed_at,
        "finalized": row[0],
        "drafts_left": row[1],
        "outbox_rows": row[2],
        "outbox_distinct": row[3],
        "numbers_not_0001": row[4],
        "recurring_lines": row[5],
        "billing_run": row[6],
        "sync_messages_queued": queued,
        "rollup_verify_diffs": rollup_diffs,
        "usage_verify_diffs": usage_diffs,
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "cores": os.cpu_count(),
    }
    engine.dispose()
    ok = row[0] == args.orgs and row[1] == 0 and row[2] == row[3] == args.orgs and row[4] == 0
    ok = ok and not rollup_diffs and not usage_diffs
    if args.sync_invoices:
        synced = close_sync.run(args.sync_invoices, args.sync_rate)
        result["sync_at_rate_limit"] = synced
        ok = ok and synced["synced"] == args.sync_invoices and not synced["duplicates_on_mock"]
    print(json.dumps(result, default=str))
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
