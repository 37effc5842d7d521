"""Benchmark data: millions of finalized invoices bulk-loaded with COPY.

The domain functions would take hours for 1.8M invoices (a finalize is several round trips), so
this loader writes the rows the domain functions would have written, directly, and keeps the
same invariants: numbers gap-free per organization (continued from, and written back to,
invoice_number_sequences in the same transaction), `total = subtotal = sum(lines)`, one
invoice_sync row per finalized invoice, and the rollup updated in the transaction that adds the
invoices, so `billing rollup verify` stays empty.

Memory stays flat: rows are generated and sent in chunks of CHUNK invoices, one month per
transaction (a failure loses at most one month, and locks are held for seconds, not minutes).
"""

from __future__ import annotations

import base64
import itertools
import os
import random
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TextIO

import psycopg
from psycopg.rows import TupleRow

from models import rollup
from models.ids import new_public_id

CHUNK = 5_000  # invoices per COPY buffer: ~1 MB of text, large enough to amortise round trips
SLUG_FORMAT = "gen-{:05d}"
STATUS_WEIGHTS_OLD = (("paid", 96.0), ("open", 1.0), ("uncollectible", 1.0), ("void", 2.0))
STATUS_WEIGHTS_RECENT = (("open", 60.0), ("paid", 37.0), ("uncollectible", 1.0), ("void", 2.0))
CURRENCY_WEIGHTS = (("USD", 80.0), ("EUR", 15.0), ("GBP", 5.0))
PRODUCTS = ("machines-shared-cpu", "machines-performance-cpu", "volume-storage", "egress", "ipv4")

INVOICE_COLUMNS = (
    "id, public_id, organization_id, number, status, currency, period_start, period_end, "
    "due_date, finalized_at, paid_at, voided_at, marked_uncollectible_at, subtotal_cents, "
    "total_cents, line_item_count, created_at, updated_at"
)
ITEM_COLUMNS = (
    "public_id, invoice_id, kind, description, product, unit, quantity, unit_price, "
    "amount_cents, period_start, period_end, created_at"
)
SYNC_COLUMNS = "invoice_id, state, attempts, synced_at, revision, created_at, updated_at"

# The rollup rows of the invoices just loaded, from the domain's own definition (counted
# statuses, shard formula), added to whatever the rows already hold.
_ROLLUP = f"""
    INSERT INTO invoice_monthly_rollups AS r
        (scope_id, month, currency, shard, invoice_count, subtotal_cents, total_cents)
    {rollup.contributions_sql(shards="%(shards)s", where="i.id BETWEEN %(first)s AND %(last)s")}
    -- Key order, like models.rollup.apply_delta: concurrent finalizers cannot deadlock with us.
    ORDER BY 1, 2, 3, 4
    {rollup.ON_CONFLICT_ADD}
"""


@dataclass(frozen=True)
class Org:
    id: int
    prefix: str


def run(
    database_url: str,
    *,
    orgs: int,
    months: int,
    items: int,
    per_month: int,
    seed: int,
    shards: int,
    out: TextIO,
) -> None:
    """Load `per_month` finalized invoices for each of the last `months` complete calendar
    months, spread over organizations gen-00001..gen-<orgs> (created when missing)."""
    started = time.monotonic()
    rng = random.Random(seed)
    now = datetime.now(UTC)
    total = 0
    with psycopg.connect(database_url) as conn:
        org_rows = _ensure_orgs(conn, orgs)
        out.write(f"generate: {len(org_rows)} organizations, {months} months x {per_month:,}\n")
        for month in _last_complete_months(now.date(), months):
            t = time.monotonic()
            _load_month(conn, rng, org_rows, month, per_month, items, shards=shards, now=now)
            total += per_month
            secs = time.monotonic() - t
            out.write(f"  {month:%Y-%m}: {per_month:,} invoices in {secs:.1f} s\n")
            out.flush()
        conn.autocommit = True
        # Fresh statistics, so the planner's first queries on the new data are sane.
        conn.execute("ANALYZE invoices, invoice_items, invoice_sync, invoice_monthly_rollups")
    elapsed = time.monotonic() - started
    rate = total / elapsed if elapsed else 0.0
    out.write(f"generate: {total:,} invoices in {elapsed:.1f} s ({rate:,.0f} invoices/s)\n")
    out.flush()


def _last_complete_months(today: date, months: int) -> list[date]:
    """First days of the `months` calendar months before today's (finalized means ended)."""
    index = today.year * 12 + today.month - 1
    return [date((index - k) // 12, (index - k) % 12 + 1, 1) for k in range(months, 0, -1)]


def _ensure_orgs(conn: psycopg.Connection[TupleRow], count: int) -> list[Org]:
    slugs = [SLUG_FORMAT.format(i) for i in range(1, count + 1)]
    with conn.transaction():
        existing = {
            str(slug)
            for (slug,) in conn.execute(
                "SELECT slug FROM organizations WHERE slug = ANY(%s)", (slugs,)
            )
        }
        missing = [s for s in slugs if s not in existing]
        with conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO organizations (public_id, slug, name, billing_email, invoice_prefix, "
                "default_currency) VALUES (%s, %s, %s, %s, %s, 'USD')",
                [
                    (
                        new_public_id("org"),
                        s,
                        f"Generated {s[4:]}",
                        f"billing@{s}.example",
                        s.replace("-", "").upper(),
                    )
                    for s in missing
                ],
            )
        rows = conn.execute(
            "SELECT id, invoice_prefix FROM organizations WHERE slug = ANY(%s) ORDER BY slug",
            (slugs,),
        ).fetchall()
    return [Org(int(i), str(p)) for i, p in rows]


def _reserve_ids(conn: psycopg.Connection[TupleRow], n: int) -> int:
    """Reserve n consecutive invoice ids; returns the first.

    The SHARE ROW EXCLUSIVE lock conflicts with the ROW EXCLUSIVE lock every INSERT takes
    before it evaluates its identity default, so no other session can draw a nextval between
    ours and the setval. It is held only for this short transaction: sequences are not
    transactional, so the reservation outlives it.
    """
    with conn.transaction():
        conn.execute("LOCK TABLE invoices IN SHARE ROW EXCLUSIVE MODE")
        row = conn.execute(
            "SELECT nextval(pg_get_serial_sequence('invoices', 'id'))::bigint"
        ).fetchone()
        assert row is not None
        first = int(row[0])
        conn.execute(
            "SELECT setval(pg_get_serial_sequence('invoices', 'id'), %s)", (first + n - 1,)
        )
    return first


def _public_id(prefix: str) -> str:
    # Random, not from the seeded rng: public ids are unique across runs and never guessable.
    return prefix + base64.b32encode(os.urandom(10)).decode().lower()


def _ts(t: datetime) -> str:
    return t.isoformat()


def _load_month(
    conn: psycopg.Connection[TupleRow],
    rng: random.Random,
    orgs: list[Org],
    month: date,
    n: int,
    items: int,
    *,
    shards: int,
    now: datetime,
) -> None:
    first_id = _reserve_ids(conn, n)
    last_id = first_id + n - 1
    period_end = date(month.year + month.month // 12, month.month % 12 + 1, 1)
    recent = (now.date() - period_end).days < 62
    table = STATUS_WEIGHTS_RECENT if recent else STATUS_WEIGHTS_OLD
    statuses = [s for s, _ in table]
    status_cum = list(itertools.accumulate(w for _, w in table))
    currencies = [c for c, _ in CURRENCY_WEIGHTS]
    currency_cum = list(itertools.accumulate(w for _, w in CURRENCY_WEIGHTS))
    with conn.transaction():
        # NOTE: replica mode skips user triggers (and FK checks) for this transaction only.
        # invoice_items_guard rejects lines of a finalized invoice, and the invoices must exist
        # before their lines (FK), so a loader writing finalized invoices with their lines in
        # one pass needs it; the rows are consistent by construction. Requires a superuser,
        # which the embedded and CI servers are.
        conn.execute("SET LOCAL session_replication_role = replica")
        # Lock the counters of all our organizations, in key order, for the whole month: a
        # concurrent finalize of one of them waits here instead of taking a number we assign.
        conn.execute(
            "INSERT INTO invoice_number_sequences (organization_id, last_number) "
            "SELECT unnest(%s::bigint[]), 0 ON CONFLICT DO NOTHING",
            ([o.id for o in orgs],),
        )
        last_number = {
            int(org_id): int(number)
            for org_id, number in conn.execute(
                "SELECT organization_id, last_number FROM invoice_number_sequences "
                "WHERE organization_id = ANY(%s) ORDER BY organization_id FOR UPDATE",
                ([o.id for o in orgs],),
            )
        }
        next_id = first_id
        for start in range(0, n, CHUNK):
            size = min(CHUNK, n - start)
            inv_buf: list[str] = []
            item_buf: list[str] = []
            sync_buf: list[str] = []
            for _ in range(size):
                inv_id = next_id
                next_id += 1
                # Skewed towards low indices: a few organizations own many invoices.
                org = orgs[int(len(orgs) * rng.random() ** 2)]
                number = last_number[org.id] + 1
                last_number[org.id] = number
                status = rng.choices(statuses, cum_weights=status_cum)[0]
                currency = rng.choices(currencies, cum_weights=currency_cum)[0]
                # Log-normal: median ~$30, a long tail of large customers (capped at $10M).
                subtotal = min(int(rng.lognormvariate(8.0, 1.5)) + 1, 10**9)
                created = datetime(period_end.year, period_end.month, 1, tzinfo=UTC)
                finalized = min(now, created + timedelta(minutes=rng.randrange(48 * 60)))
                due = finalized.date() + timedelta(days=14)
                paid = voided = uncollectible = r"\N"
                if status == "paid":
                    paid = _ts(min(now, finalized + timedelta(hours=rng.randrange(1, 20 * 24))))
                elif status == "void":
                    voided = _ts(min(now, finalized + timedelta(hours=rng.randrange(1, 72))))
                elif status == "uncollectible":
                    uncollectible = _ts(min(now, finalized + timedelta(days=45)))
                fin = _ts(finalized)
                inv_buf.append(
                    f"{inv_id}\t{_public_id('inv_')}\t{org.id}\t{org.prefix}-{number:04d}\t"
                    f"{status}\t{currency}\t{month}\t{period_end}\t{due}\t{fin}\t{paid}\t"
                    f"{voided}\t{uncollectible}\t{subtotal}\t{subtotal}\t{items}\t{fin}\t{fin}\n"
                )
                if items:
                    _item_rows(item_buf, rng, inv_id, subtotal, items, month, period_end, fin)
                sync_buf.append(f"{inv_id}\tsynced\t1\t{fin}\t0\t{fin}\t{fin}\n")
            # One COPY at a time per connection: invoices first (the lines' FK), then lines.
            _copy(conn, f"COPY invoices ({INVOICE_COLUMNS}) FROM STDIN", inv_buf)
            if item_buf:
                _copy(conn, f"COPY invoice_items ({ITEM_COLUMNS}) FROM STDIN", item_buf)
            _copy(conn, f"COPY invoice_sync ({SYNC_COLUMNS}) FROM STDIN", sync_buf)
        conn.execute(
            "UPDATE invoice_number_sequences s SET last_number = v.n "
            "FROM unnest(%s::bigint[], %s::bigint[]) AS v(org, n) "
            "WHERE s.organization_id = v.org",
            (list(last_number), list(last_number.values())),
        )
        conn.execute(_ROLLUP, {"shards": shards, "first": first_id, "last": last_id})


def _item_rows(
    buf: list[str],
    rng: random.Random,
    invoice_id: int,
    subtotal: int,
    items: int,
    start: date,
    end: date,
    created: str,
) -> None:
    """`items` lines whose amounts sum exactly to `subtotal`: quantity 1 at a whole-cent price,
    so each amount is its price and no rounding can drift."""
    cuts = sorted(rng.randint(0, subtotal) for _ in range(items - 1))
    bounds = [0, *cuts, subtotal]
    for k in range(items):
        amount = bounds[k + 1] - bounds[k]
        product = PRODUCTS[k % len(PRODUCTS)]
        buf.append(
            f"{_public_id('li_')}\t{invoice_id}\tusage\t{product} usage\t{product}\tmonth\t1\t"
            f"{amount}\t{amount}\t{start}\t{end}\t{created}\n"
        )


def _copy(conn: psycopg.Connection[TupleRow], statement: str, rows: list[str]) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        copy.write("".join(rows))
