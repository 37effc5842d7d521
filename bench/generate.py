"""Create and fill the `billing_bench` database: 1.8M finalized invoices (50,000 a month for 36
months, no lines) for the monthly-summary benchmark (`make bench-summary`).

Runs `billing generate` as a child process, so the peak RSS measured (getrusage of the children)
is the loader's own. Prints one JSON line. Skips when the data set is already there, unless
`--force` (which drops and recreates the database).

    uv run python bench/generate.py [--force]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.services import resolve_urls  # noqa: E402
from migrations_runner import upgrade  # noqa: E402

# BENCH_DB names another database, so benchmarks run side by side never share one.
BENCH_DB = os.environ.get("BENCH_DB", "billing_bench")
ORGS, MONTHS, PER_MONTH = 1_000, 36, 50_000
EXPECTED = MONTHS * PER_MONTH


def with_database(url: str, database: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def bench_url() -> str:
    """URL of BENCH_DB (billing_bench) on the server of DATABASE_URL (or the embedded one)."""
    db, _ = resolve_urls(
        os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"), ROOT / ".local"
    )
    return with_database(db, BENCH_DB)


def invoice_count(url: str) -> int:
    try:
        with psycopg.connect(url) as conn:
            row = conn.execute("SELECT count(*) FROM invoices").fetchone()
            return int(row[0]) if row else 0
    except psycopg.Error:
        return 0  # no database or no schema yet


def ensure(force: bool = False) -> dict[str, object]:
    url = bench_url()
    admin = with_database(url, "postgres")
    if not force and invoice_count(url) >= EXPECTED:
        return {"bench": "generate", "skipped": True, "invoices": invoice_count(url)}
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{BENCH_DB}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{BENCH_DB}"')
    upgrade(url)
    cmd = [sys.executable, "-m", "cli", "generate", "--orgs", str(ORGS), "--months", str(MONTHS)]
    cmd += ["--per-month", str(PER_MONTH), "--items", "0"]
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "DATABASE_URL": url}, check=True)
    elapsed = time.monotonic() - started
    # ru_maxrss is in KiB on Linux: the largest child reaped so far, i.e. the loader.
    peak_kib = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    assert proc.returncode == 0
    n = invoice_count(url)
    return {
        "bench": "generate",
        "invoices": n,
        "elapsed_s": round(elapsed, 1),
        "invoices_per_s": round(n / elapsed),
        "peak_rss_mb": round(peak_kib / 1024, 1),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--force", action="store_true", help="drop and regenerate billing_bench")
    args = p.parse_args()
    print(json.dumps(ensure(force=args.force)), flush=True)


if __name__ == "__main__":
    main()
