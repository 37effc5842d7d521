"""Chaos benchmark of the Stripe sync (`make bench-sync`).

Real PostgreSQL (its own database, `billing_bench_sync`), real Redis, two real `celery worker`
processes (concurrency 4 each) plus `celery beat`, and the mock Stripe over HTTP in its own
process, injecting faults on every endpoint: 10% 500s, 5% 429s (Retry-After 1 s), 5% timeouts,
2% lost responses, with an idempotency TTL of 4 s so that retries outlive their keys. Stripe's
real semantics on top (issue 13): search lags 60 s behind writes, 20% of create answers are
lost, 2% of requests get a *saved* 500 (stored for the key and replayed to every retry, half of
them after executing), and webhooks arrive duplicated (30%), late and reordered (up to 3 s).
Worker 1 is killed with SIGKILL twice and restarted. The run ends when every invoice is SYNCED
or FAILED; then payments are driven (paid and declined on the mock, marked paid here), and
what the mock holds is compared with the database, and ONE JSON line is printed.

The second phase (skip with --skip-outage, or run alone with --auth-outage) answers every request
with 401 while new invoices arrive: it shows the circuit breaker (no call while it is open, one
probe per half-open period, no invoice failed) and the recovery once the fault is lifted; a
second JSON line.

    python bench/sync.py [--invoices 2000] [--big 5] [--rate 300] [--skip-outage | --auth-outage]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import time
from collections import Counter
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import httpx
import redis
import sqlalchemy as sa
from common import ROOT, cli, free_port, fresh_database, log, server_urls, start, stop, wait_http

from models import organizations
from models.db import make_engine, session_factory, transaction
from models.invoices import lifecycle
from models.invoices.lifecycle import LineInput
from models.tables import LineItemKind
from sync.breaker import Breaker
from sync.grouping import remote_lines

FAULTS = [
    # Lost create answers first: the rules are tried in order and the first that fires wins.
    {"endpoint": "POST /v1/invoices", "fault": "lost_response", "probability": 0.20},
    {"endpoint": "POST /v1/customers", "fault": "lost_response", "probability": 0.20},
    {"endpoint": "*", "fault": "saved_500", "probability": 0.01, "executed": True},
    {"endpoint": "*", "fault": "saved_500", "probability": 0.01, "executed": False},
    {"endpoint": "*", "fault": "error_500", "probability": 0.10},
    {"endpoint": "*", "fault": "rate_limit", "probability": 0.05, "retry_after": 1},
    {"endpoint": "*", "fault": "timeout", "probability": 0.05, "seconds": 1.5},
    {"endpoint": "*", "fault": "lost_response", "probability": 0.02},
]
IDEMPOTENCY_TTL = 4
SEARCH_LAG = 60
WEBHOOK_SECRET = "whsec_bench_sync"
PRODUCTS = ["machines-shared-cpu", "machines-performance-cpu", "egress", "volume-storage", "ipv4"]
REGIONS = ["ams", "fra", "lhr", "iad", "ord", "sjc", "nrt", "sin", "syd", "gru", "jnb", "bom"]
LOG_DIR = ROOT / "bench" / "out"
BREAKER_SECONDS = 3
OUTAGE_SECONDS = 20.0


def make_invoices(
    database_url: str, sizes: list[int], *, seed: int, slug: str, orgs: int = 50
) -> None:
    """Finalized invoices of the given line counts, committed in batches. Nothing is enqueued:
    the sweeper finds them, as it finds any invoice whose enqueue was lost."""
    rng = random.Random(seed)
    engine = make_engine(database_url, pool_size=1)
    factory = session_factory(engine)
    now = datetime.now(UTC)
    with transaction(factory) as s:
        owners = [
            organizations.create(
                s,
                slug=f"{slug}-{i:03d}",
                name=f"{slug} {i}",
                billing_email=f"b{i}@x.example",
                invoice_prefix=f"{slug[:4].upper()}{i:03d}",
            )
            for i in range(orgs)
        ]
    for first in range(0, len(sizes), 25):
        with transaction(factory) as s:
            for n in range(first, min(first + 25, len(sizes))):
                inv = lifecycle.create_draft(
                    s,
                    owners[n % len(owners)],
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
                    for i in range(sizes[n])
                ]
                for start_at in range(0, len(lines), 1000):
                    lifecycle.add_lines(s, inv, lines[start_at : start_at + 1000], now=now)
                lifecycle.finalize(s, inv, now=now, rollup_shards=16)
    engine.dispose()


def issue_credit_notes(
    database_url: str, *, share: float, seed: int, void_share: float = 0.2
) -> int:
    """Credit notes (issue 21) on `share` of the finalized invoices that have none yet: one
    line against the invoice's first line (a third of it) and a custom line; `void_share` of
    them voided again at once. Nothing is enqueued: the issue makes the invoice's row due."""
    from sqlmodel import select

    from models.invoices import credit_notes
    from models.invoices.credit_notes import CreditLineInput
    from models.tables import CreditNote, Invoice, InvoiceItem

    rng = random.Random(seed)
    engine = make_engine(database_url, pool_size=1)
    factory = session_factory(engine)
    now = datetime.now(UTC)
    with transaction(factory) as s:
        credited = set(s.exec(select(CreditNote.invoice_id)))
        ids = [
            i
            for i in s.exec(select(Invoice.id).where(Invoice.status == "open"))
            if i not in credited
        ]
    chosen = sorted(i for i in ids if rng.random() < share)
    for first in range(0, len(chosen), 25):
        with transaction(factory) as s:
            for invoice_id in chosen[first : first + 25]:
                inv = s.get_one(Invoice, invoice_id)
                item = s.exec(
                    select(InvoiceItem).where(InvoiceItem.invoice_id == invoice_id).limit(1)
                ).one()
                lines = [CreditLineInput(description="bench goodwill", amount_cents=1)]
                if item.amount_cents >= 3:
                    lines.insert(
                        0,
                        CreditLineInput(
                            line_item_id=item.public_id, amount_cents=item.amount_cents // 3
                        ),
                    )
                note = credit_notes.issue(
                    s,
                    inv,
                    reason="duplicate",
                    memo="bench",
                    lines=lines,
                    settlement=None,
                    created_by="bench",
                    now=now,
                    rollup_shards=16,
                )
                if rng.random() < void_share:
                    credit_notes.void(s, note, now=now, rollup_shards=16)
    engine.dispose()
    return len(chosen)


def compare_credit_notes(mock_url: str, engine: sa.Engine) -> dict[str, Any]:
    """Ours against the mock's, by metadata[credit_note_id]: each issued one exactly once on
    Stripe with our total, each void one void there (or never created), none failed."""
    remote = httpx.get(f"{mock_url}/_mock/credit_notes", timeout=120).json()["data"]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for note in remote:
        by_id.setdefault(note["metadata"].get("credit_note_id", "?"), []).append(note)
    with engine.connect() as conn:
        ours = conn.execute(
            sa.text(
                "SELECT c.public_id, c.status, c.total_cents, c.stripe_credit_note_id, s.state"
                " FROM credit_notes c JOIN invoice_sync s ON s.invoice_id = c.invoice_id"
            )
        ).all()
    issued = [o for o in ours if o.status == "issued"]
    return {
        "credit_notes": len(ours),
        "credit_notes_void": len(ours) - len(issued),
        "credit_notes_failed": sum(1 for o in ours if o.state == "failed"),
        "credit_notes_duplicated": sum(len(v) - 1 for v in by_id.values()),
        "credit_notes_missing": sum(
            1 for o in issued if o.public_id not in by_id or o.stripe_credit_note_id is None
        ),
        "credit_note_amount_mismatches": sum(
            1
            for o in issued
            if o.public_id in by_id and by_id[o.public_id][0]["total"] != o.total_cents
        ),
        "credit_notes_void_mismatches": sum(
            1
            for o in ours
            if o.status == "void"
            and o.public_id in by_id
            and by_id[o.public_id][0]["status"] != "void"
        ),
    }


def states(engine: sa.Engine) -> Counter[str]:
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT state, count(*) FROM invoice_sync GROUP BY state"))
        return Counter({str(state): int(n) for state, n in rows})


def expected_on_stripe(engine: sa.Engine) -> dict[str, tuple[int, int]]:
    """public id -> (total, lines Stripe should hold), computed with the worker's own grouping
    function from the stored items. Voided invoices are left out (Stripe keeps their total)."""
    from sqlmodel import Session, select

    from models.tables import Invoice, InvoiceItem

    out: dict[str, tuple[int, int]] = {}
    with Session(engine) as s:
        items_by_invoice: dict[int, list[InvoiceItem]] = {}
        for item in s.exec(select(InvoiceItem)):
            items_by_invoice.setdefault(item.invoice_id, []).append(item)
        for inv in s.exec(select(Invoice).where(Invoice.status != "void")):
            lines = remote_lines(
                items_by_invoice.get(inv.id or 0, []), period=(inv.period_start, inv.period_end)
            )
            out[inv.public_id] = (inv.total_cents, len(lines))
    return out


def compare(
    mock_url: str, engine: sa.Engine, *, paid_on_mock: set[str] | None = None
) -> dict[str, Any]:
    remote = httpx.get(f"{mock_url}/_mock/invoices", timeout=120).json()["data"]
    by_id: dict[str, list[dict[str, Any]]] = {}
    for inv in remote:
        by_id.setdefault(inv["metadata"].get("invoice_id", "?"), []).append(inv)
    expected = expected_on_stripe(engine)
    firsts = {pid: found[0] for pid, found in by_id.items()}
    return {
        "duplicates_on_mock": sum(len(v) - 1 for v in by_id.values()),
        "missing_on_mock": sum(1 for pid in expected if pid not in by_id),
        "total_mismatches": sum(
            1
            for pid, (total, _) in expected.items()
            if pid in firsts and firsts[pid]["total"] != total
        ),
        "line_mismatches": sum(
            1
            for pid, (_, n) in expected.items()
            if pid in firsts
            and (firsts[pid]["lines"]["total_count"] != n or len(firsts[pid]["lines"]["data"]) != n)
        ),
        "not_as_expected_on_mock": sum(
            1
            for pid in expected
            if pid in firsts
            and firsts[pid]["status"] != ("paid" if pid in (paid_on_mock or set()) else "open")
        ),
        "max_lines_on_one_mock_invoice": max((len(i["lines"]["data"]) for i in remote), default=0),
    }


def duplicate_customers(mock_url: str) -> int:
    customers = httpx.get(f"{mock_url}/_mock/customers", timeout=60).json()["data"]
    per_org = Counter(c["metadata"].get("org_id") for c in customers)
    return sum(n - 1 for n in per_org.values())


def payments_phase(engine: sa.Engine, mock_url: str, database_url: str) -> dict[str, Any]:
    """Drive payments after the sync settled, under the same faults: 5% of the invoices paid by
    card on the mock, 2.5% declined, 5% marked paid here (the sync tells Stripe). Webhooks come
    duplicated, late and reordered. Checks every one ended where it should."""

    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT i.id, i.public_id, i.stripe_invoice_id FROM invoices i"
                " JOIN invoice_sync s ON s.invoice_id = i.id"
                " WHERE s.state = 'synced' AND i.status = 'open' ORDER BY i.id"
            )
        ).all()
    n = len(rows) // 20
    by_card, declined, here = rows[:n], rows[n : n + n // 2], rows[2 * n : 3 * n]
    for _, _, remote in by_card:
        httpx.post(f"{mock_url}/_mock/invoices/{remote}/pay", json={}, timeout=30)
    for _, _, remote in declined:
        httpx.post(f"{mock_url}/_mock/invoices/{remote}/pay", json={"fail": True}, timeout=30)
    factory = session_factory(engine)
    with transaction(factory) as s:
        from models.tables import Invoice

        for invoice_id, _, _ in here:
            lifecycle.mark_paid(
                s,
                s.get_one(Invoice, invoice_id),
                now=datetime.now(UTC),
                paid_on=lifecycle.PaidOn.HERE,
            )
    started = time.monotonic()
    wait_settled(engine, timeout=300, started=started)
    flushed = httpx.post(
        f"{mock_url}/_mock/webhooks/flush", params={"timeout": 600}, timeout=660
    ).json()
    remote = {
        i["id"]: i for i in httpx.get(f"{mock_url}/_mock/invoices", timeout=120).json()["data"]
    }
    with engine.connect() as conn:
        status = dict(conn.execute(sa.text("SELECT id, status FROM invoices")).all())
        payment = dict(
            conn.execute(sa.text("SELECT invoice_id, status FROM invoice_payments")).all()
        )
    return {
        "paid_by_card_not_paid_here": sum(1 for i, _, _ in by_card if status[i] != "paid"),
        "declined_not_failed_here": sum(
            1 for i, _, _ in declined if status[i] != "open" or payment.get(i) != "failed"
        ),
        "paid_here_not_paid_on_stripe": sum(
            1 for _, _, r in here if remote.get(r, {}).get("status") != "paid"
        ),
        "payments": {"by_card": len(by_card), "declined": len(declined), "marked_here": len(here)},
        "webhooks": {k: flushed[k] for k in ("delivered", "duplicated", "failed", "pending")},
        "payment_phase_seconds": round(time.monotonic() - started, 1),
        "expected_paid_on_mock": [pid for _, pid, _ in [*by_card, *here]],
    }


def big_invoices_check(mock_url: str, engine: sa.Engine) -> list[dict[str, Any]]:
    """The invoices over Stripe's 250-line cap: grouped, and to the cent."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT public_id, line_item_count, total_cents FROM invoices"
                " WHERE line_item_count > 250 ORDER BY id"
            )
        ).all()
    remote = {
        i["metadata"].get("invoice_id"): i
        for i in httpx.get(f"{mock_url}/_mock/invoices", timeout=120).json()["data"]
    }
    out = []
    for pid, count, total in rows:
        r = remote.get(pid)
        out.append(
            {
                "lines": int(count),
                "groups_on_mock": len(r["lines"]["data"]) if r else None,
                "total_matches": bool(r) and r["total"] == int(total),
                "all_grouped": bool(r)
                and all("group" in x["metadata"] for x in r["lines"]["data"]),
            }
        )
    return out


def worker_argv(name: str) -> list[str]:
    # Through the composition root, which configures the Celery app from the settings; the
    # queue comes from BILLING_SYNC_QUEUE in the environment.
    return [
        sys.executable,
        "-m",
        "cli",
        "worker",
        "--concurrency",
        "4",
        "--hostname",
        name,
        "--loglevel=WARNING",
    ]


def wait_settled(engine: sa.Engine, *, timeout: float, started: float) -> Counter[str]:
    last_print = 0.0
    while True:
        s = states(engine)
        elapsed = time.monotonic() - started
        if elapsed - last_print >= 10:
            log(f"  {elapsed:5.0f}s {dict(s)}")
            last_print = elapsed
        if s["synced"] + s["failed"] == sum(s.values()) or elapsed > timeout:
            return s
        time.sleep(0.5)


def chaos(args: argparse.Namespace) -> None:
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    for old in [*LOG_DIR.glob("*.log"), *LOG_DIR.glob("beat-*")]:
        old.unlink()
    database_url = fresh_database("billing_bench_sync" + os.environ.get("BENCH_DB_SUFFIX", ""))
    _, redis_url = server_urls()
    engine = make_engine(database_url, pool_size=2)
    rng = random.Random(7)
    if args.auth_outage:
        args.invoices = args.big = 0
    sizes = [rng.randint(1, 120) for _ in range(args.invoices)]
    sizes += [rng.randint(300, 1000) for _ in range(args.big)]
    log(f"creating {args.invoices} invoices of 1-120 lines and {args.big} of 300-1,000...")
    t0 = time.monotonic()
    make_invoices(database_url, sizes, seed=7, slug="chaos")
    log(f"  {sum(sizes):,} lines in {time.monotonic() - t0:.0f}s")
    # Half the credit notes before any sync (they wait for their invoice to be finalized on
    # Stripe), half once syncing is under way (below).
    credit_share = 0 if args.auth_outage else args.credit_share / 2
    notes = issue_credit_notes(database_url, share=credit_share, seed=8)
    log(f"  {notes} credit notes issued before the sync")

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
        "SYNC_BACKOFF_CAP": "5",
        # 22% of calls fail here (Stripe's real rate is far below 1%), so an invoice may need
        # many attempts; every one of them resumes where the last one stopped.
        "SYNC_MAX_ATTEMPTS": "30",
        "SYNC_SWEEP_EVERY": "1",
        "SYNC_SWEEP_HOLD": "10",
        "SYNC_LEASE_SECONDS": "20",
        "SYNC_BREAKER_SECONDS": str(BREAKER_SECONDS),
        "BILLING_LOCAL_DIR": str(LOG_DIR / "state"),
        "STRIPE_WEBHOOK_SECRETS": WEBHOOK_SECRET,
    }
    api_port = free_port()
    rules = [] if args.auth_outage else FAULTS
    faults = json.dumps(
        {
            "rules": rules,
            "idempotency_ttl_seconds": IDEMPOTENCY_TTL,
            "search_lag_seconds": 0 if args.auth_outage else SEARCH_LAG,
            "seed": 42,
            "webhook_url": f"http://127.0.0.1:{api_port}/webhooks/stripe",
            "webhook_secrets": [WEBHOOK_SECRET],
            "webhook_duplicate_probability": 0.3,
            "webhook_max_delay_seconds": 3,
        }
    )
    procs = {
        "mock": start(
            cli("mock-stripe", "--port", str(port), "--faults", faults, "--state", "none"),
            env,
            log=LOG_DIR / "mock.log",
        ),
        "api": start(cli("serve", "--port", str(api_port)), env, log=LOG_DIR / "api.log"),
    }
    try:
        wait_http(f"{mock_url}/_mock/stats")
        wait_http(f"http://127.0.0.1:{api_port}/healthz")
        procs["w1"] = start(worker_argv(f"w1-{port}@%h"), env, log=LOG_DIR / "worker1.log")
        procs["w2"] = start(worker_argv(f"w2-{port}@%h"), env, log=LOG_DIR / "worker2.log")
        beat_argv = [sys.executable, "-m", "cli", "beat"]
        beat_argv += ["--loglevel=WARNING", "--schedule", str(LOG_DIR / f"beat-{port}")]
        procs["beat"] = start(beat_argv, env, log=LOG_DIR / "beat.log")
        started = time.monotonic()
        kills = 0
        last_print = 0.0
        late_notes_done = credit_share == 0
        while True:
            s = states(engine)
            total = sum(s.values())
            elapsed = time.monotonic() - started
            if elapsed - last_print >= 10:
                log(f"  {elapsed:5.0f}s {dict(s)}")
                last_print = elapsed
            if s["synced"] + s["failed"] == total or elapsed > args.timeout:
                break
            if not late_notes_done and s["synced"] >= total * 0.3:
                late_notes_done = True
                notes = issue_credit_notes(database_url, share=credit_share, seed=9)
                log(f"  {elapsed:5.0f}s {notes} credit notes issued while syncing")
            # SIGKILL mid-flight (at 15% and 45% synced, so surely while attempts run): its
            # running attempts lose their leases, its reserved messages are never acknowledged;
            # the sweeper recovers both.
            if kills < 2 and s["synced"] >= total * (0.15 + 0.3 * kills):
                stop(procs["w1"], kill=True)
                kills += 1
                procs["w1"] = start(
                    worker_argv(f"w1-{port}-{kills}@%h"), env, log=LOG_DIR / "worker1.log"
                )
                log(f"  {elapsed:5.0f}s killed worker 1 (SIGKILL) at {dict(s)}, restarted")
            time.sleep(0.5)
        elapsed = time.monotonic() - started
        s = states(engine)
        stats = httpx.get(f"{mock_url}/_mock/stats").json()
        total = sum(s.values())
        pay = {} if args.auth_outage else payments_phase(engine, mock_url, database_url)
        result: dict[str, Any] = {
            "bench": "sync-chaos",
            "invoices": total,
            "synced": s["synced"],
            "failed": s["failed"],
            **compare(mock_url, engine, paid_on_mock=set(pay.pop("expected_paid_on_mock", []))),
            **compare_credit_notes(mock_url, engine),
            "duplicate_customers": duplicate_customers(mock_url),
            **pay,
            "big_invoices": big_invoices_check(mock_url, engine),
            "stripe_calls": stats["total"],
            "calls_per_invoice": round(stats["total"] / max(1, total), 2),
            "faults_injected": stats["faults"],
            "idempotent_replays": stats["idempotent_replays"],
            "worker_kills": kills,
            "elapsed_seconds": round(elapsed, 1),
            "throughput_per_second": round(s["synced"] / elapsed, 1),
        }
        if not args.auth_outage:
            print(json.dumps(result), flush=True)
        if not args.skip_outage:
            print(json.dumps(outage(engine, mock_url, database_url, redis_url, queue)), flush=True)
    finally:
        for proc in procs.values():
            stop(proc)
        engine.dispose()


def outage(
    engine: sa.Engine, mock_url: str, database_url: str, redis_url: str, queue: str
) -> dict[str, Any]:
    """Every call answers 401 for OUTAGE_SECONDS while 100 new invoices arrive."""
    client = redis.Redis.from_url(redis_url)
    breaker = Breaker(client, base_seconds=BREAKER_SECONDS, namespace=queue)
    # Warm up: one invoice synced proves the workers and beat are up before the key "breaks".
    make_invoices(database_url, [1], seed=9, slug="warmup", orgs=1)
    wait_settled(engine, timeout=120, started=time.monotonic())
    before = httpx.get(f"{mock_url}/_mock/stats").json()
    httpx.post(
        f"{mock_url}/_mock/faults",
        json={"rules": [{"endpoint": "*", "fault": "auth_error", "probability": 1.0}]},
    ).raise_for_status()
    started = time.monotonic()
    log("auth outage: every call answers 401; 100 new invoices arrive")
    make_invoices(database_url, [3] * 100, seed=8, slug="outage", orgs=5)
    time.sleep(max(0.0, started + OUTAGE_SECONDS - time.monotonic()))
    with engine.connect() as conn:
        failed = conn.execute(
            sa.text("SELECT count(*) FROM invoice_sync WHERE state = 'failed'")
        ).scalar_one()
        waiting = conn.execute(
            sa.text("SELECT count(*) FROM invoice_sync WHERE state IN ('pending', 'retrying')")
        ).scalar_one()
    during = httpx.get(f"{mock_url}/_mock/stats").json()
    trips = int(client.get(breaker.trips_key) or 0)
    httpx.delete(f"{mock_url}/_mock/faults").raise_for_status()
    log("fault lifted")
    lifted = time.monotonic()
    s = wait_settled(engine, timeout=lifted - started + 180, started=started)
    ok_during = _count(during, "200") - _count(before, "200")
    auth_errors = _count(during, "401") - _count(before, "401")
    return {
        "bench": "sync-auth-outage",
        "outage_seconds": OUTAGE_SECONDS,
        "calls_during_outage": int(during["total"]) - int(before["total"]),
        "auth_errors": auth_errors,
        "ok_calls_during_outage": ok_during,
        # Every 401 that found the breaker closed or half-open opened it (a trip): the first
        # failure, then one probe per open period. A 401 that found it already open came from a
        # call made before it opened.
        "breaker_trips": trips,
        "half_open_probes": max(0, trips - 1),
        "calls_not_opening_or_probing": auth_errors - trips,
        "invoices_failed_by_outage": int(failed),
        "invoices_waiting_at_lift": int(waiting),
        "all_synced_after_lift": s["synced"] == sum(s.values()),
        "seconds_from_lift_to_all_synced": round(time.monotonic() - lifted, 1),
    }


def _count(stats: dict[str, Any], status: str) -> int:
    return sum(int(per.get(status, 0)) for per in stats["requests"].values())


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--big", type=int, default=5)
    parser.add_argument("--rate", type=float, default=300.0, help="Stripe calls/s for the fleet")
    parser.add_argument("--timeout", type=float, default=540.0)
    parser.add_argument(
        "--credit-share", type=float, default=0.2, help="share of invoices given a credit note"
    )
    parser.add_argument("--skip-outage", action="store_true", help="the chaos phase only")
    parser.add_argument("--auth-outage", action="store_true", help="the 401 phase only")
    chaos(parser.parse_args())


if __name__ == "__main__":
    main()
