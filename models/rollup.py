"""Monthly rollup: additive counters kept in the same transaction as every status change.

Counted: finalized invoices (open, paid, uncollectible) in the UTC calendar month of their
billing period's start. A finalize adds (1, subtotal, total); a void subtracts the same; paying
or marking uncollectible changes nothing; drafts never count. Issued credit notes add their
total to `credited` of their invoice's month (not the month they were issued in, so a month's
net = total - credited is what was finally owed for it); voiding one subtracts it. An invoice
with issued credit notes cannot be voided (migration 0009), so credits never outlive it. COUNTED_STATUSES and
platform_shard are the one definition of these rules: every SQL statement that counts or shards
(here, the bulk loader in demo/generate.py, the benchmarks) is built from the helpers below.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

import sqlalchemy as sa
from sqlmodel import Session

from models import tables

PLATFORM_SCOPE = 0  # organization ids start at 1, so 0 can name the platform
# The one definition of what the rollup counts. The SQL below, the demo loader and the
# benchmarks all build their predicates from it (counted_sql), never from a copy.
COUNTED_STATUSES: tuple[str, ...] = (
    tables.InvoiceStatus.OPEN.value,
    tables.InvoiceStatus.PAID.value,
    tables.InvoiceStatus.UNCOLLECTIBLE.value,
)


def month_of(day: date) -> date:
    return day.replace(day=1)


def platform_shard(invoice_id: int, shards: int) -> int:
    """Which of the platform's `shards` rows of a month an invoice adds to."""
    return invoice_id % shards


def counted_sql(status: str = "status") -> str:
    """SQL predicate: the `status` column holds a counted status (COUNTED_STATUSES)."""
    listed = ", ".join(f"'{s}'" for s in COUNTED_STATUSES)
    return f"{status} IN ({listed})"


def platform_shard_sql(invoice_id: str, shards: str) -> str:
    """SQL for platform_shard: `invoice_id` and `shards` are SQL expressions or placeholders
    (`:shards` for SQLAlchemy, `%(shards)s` for psycopg). mod() rather than `%`, which psycopg
    would read as a placeholder."""
    return f"mod({invoice_id}, {shards})::smallint"


def contributions_sql(*, shards: str, where: str = "TRUE") -> str:
    """SELECT of the rollup rows (scope_id, month, currency, shard, invoice_count,
    subtotal_cents, total_cents) that the invoices `i` matching `where` contribute: each counted
    invoice once for the platform (in its shard) and once for its organization (shard 0)."""
    return f"""
        SELECT CASE WHEN o.scope = 0 THEN {PLATFORM_SCOPE} ELSE i.organization_id END,
               date_trunc('month', i.period_start)::date, i.currency,
               CASE WHEN o.scope = 0 THEN {platform_shard_sql("i.id", shards)} ELSE 0 END,
               count(*), sum(i.subtotal_cents), sum(i.total_cents)
        FROM invoices i CROSS JOIN (VALUES (0), (1)) AS o(scope)
        WHERE {counted_sql("i.status")} AND ({where})
        GROUP BY 1, 2, 3, 4
    """


# Adds the incoming counters to an existing row. `r` is the target's alias: a bare column name
# would be ambiguous with EXCLUDED's.
ON_CONFLICT_ADD = """
    ON CONFLICT (scope_id, month, currency, shard) DO UPDATE SET
        invoice_count = r.invoice_count + EXCLUDED.invoice_count,
        subtotal_cents = r.subtotal_cents + EXCLUDED.subtotal_cents,
        total_cents = r.total_cents + EXCLUDED.total_cents
"""


@dataclass(frozen=True)
class RollupKey:
    scope_id: int
    month: date
    currency: str
    shard: int


def keys_for(invoice: tables.Invoice, *, shards: int) -> list[RollupKey]:
    """The rows one invoice contributes to, in primary-key order."""
    assert invoice.id is not None
    month = month_of(invoice.period_start)
    return sorted(
        [
            RollupKey(PLATFORM_SCOPE, month, invoice.currency, platform_shard(invoice.id, shards)),
            RollupKey(invoice.organization_id, month, invoice.currency, 0),
        ],
        key=lambda k: (k.scope_id, k.month, k.currency, k.shard),
    )


_UPSERT = sa.text(
    f"""
    INSERT INTO invoice_monthly_rollups AS r
        (scope_id, month, currency, shard, invoice_count, subtotal_cents, total_cents)
    VALUES (:scope_id, :month, :currency, :shard, :n, :subtotal, :total)
    {ON_CONFLICT_ADD}
    """
)


def apply_delta(session: Session, invoice: tables.Invoice, sign: int, *, shards: int) -> None:
    """Add (sign=+1) or remove (sign=-1) one invoice's contribution. Caller commits.

    Rows are touched in primary-key order, so two transactions can never wait on each other's
    rows in opposite orders (no deadlock). The platform row is sharded by invoice id: one hot
    row per month would serialise every month-end finalizer behind a single row lock.
    """
    assert sign in (1, -1)
    for key in keys_for(invoice, shards=shards):
        session.execute(
            _UPSERT,
            {
                "scope_id": key.scope_id,
                "month": key.month,
                "currency": key.currency,
                "shard": key.shard,
                "n": sign,
                "subtotal": sign * invoice.subtotal_cents,
                "total": sign * invoice.total_cents,
            },
        )


_CREDIT_UPSERT = sa.text(
    """
    INSERT INTO invoice_monthly_rollups AS r
        (scope_id, month, currency, shard, invoice_count, subtotal_cents, total_cents,
         credited_cents)
    VALUES (:scope_id, :month, :currency, :shard, 0, 0, 0, :credited)
    ON CONFLICT (scope_id, month, currency, shard) DO UPDATE SET
        credited_cents = r.credited_cents + EXCLUDED.credited_cents
    """
)


def apply_credit(session: Session, invoice: tables.Invoice, cents: int, *, shards: int) -> None:
    """Add `cents` (negative for a void) to `credited` of the invoice's rows: the same keys, in
    the same order, as its finalize (`keys_for`). Caller commits (the credit note's
    transaction)."""
    for key in keys_for(invoice, shards=shards):
        session.execute(
            _CREDIT_UPSERT,
            {
                "scope_id": key.scope_id,
                "month": key.month,
                "currency": key.currency,
                "shard": key.shard,
                "credited": cents,
            },
        )


# SELECT of the rollup rows' `credited` contributions: each issued credit note once for the
# platform (in its invoice's shard) and once for its organization, in its invoice's month.
def credit_contributions_sql(*, shards: str) -> str:
    return f"""
        SELECT CASE WHEN o.scope = 0 THEN {PLATFORM_SCOPE} ELSE i.organization_id END,
               date_trunc('month', i.period_start)::date, i.currency,
               CASE WHEN o.scope = 0 THEN {platform_shard_sql("i.id", shards)} ELSE 0 END,
               0::bigint, 0::bigint, 0::bigint, sum(c.total_cents)
        FROM credit_notes c JOIN invoices i ON i.id = c.invoice_id
        CROSS JOIN (VALUES (0), (1)) AS o(scope)
        WHERE c.status = 'issued'
        GROUP BY 1, 2, 3, 4
    """


def apply_finalized(session: Session, invoice_ids: Sequence[int], *, shards: int) -> None:
    """Add the contribution of many just-finalized invoices at once (the month-end close): one
    upsert of their rows summed per key (`contributions_sql`), in primary-key order like
    `apply_delta`. Caller commits."""
    if not invoice_ids:
        return
    session.execute(
        sa.text(
            f"""
            INSERT INTO invoice_monthly_rollups AS r
                (scope_id, month, currency, shard, invoice_count, subtotal_cents, total_cents)
            SELECT * FROM ({
                contributions_sql(shards=":shards", where="i.id = ANY(CAST(:ids AS bigint[]))")
            }) AS c
            ORDER BY 1, 2, 3, 4
            {ON_CONFLICT_ADD}
            """
        ),
        {"ids": list(invoice_ids), "shards": shards},
    )


@dataclass(frozen=True)
class MonthTotals:
    year: int
    month: int
    currency: str
    invoice_count: int
    subtotal_cents: int
    total_cents: int
    # False for a month that is not over (or not closed yet): its amounts include its drafts.
    complete: bool = True
    credited_cents: int = 0

    @property
    def net_cents(self) -> int:
        """What was finally owed for the month: total less the credits on its invoices."""
        return self.total_cents - self.credited_cents

    @property
    def label(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


_READ = sa.text(
    """
    SELECT month, currency,
           sum(invoice_count)::bigint AS n,
           sum(subtotal_cents)::bigint AS subtotal,
           sum(total_cents)::bigint AS total,
           sum(credited_cents)::bigint AS credited
    FROM invoice_monthly_rollups
    WHERE scope_id = :scope_id AND month >= :first AND month < :last
      AND (CAST(:currency AS text) IS NULL OR currency = :currency)
    GROUP BY month, currency
    """
)


# The drafts of the open months (the current one, and the previous one until its close has
# finalized them): an organization's through ix_invoices_organization_id_period_start_id (a few
# rows), the platform's through the partial ix_invoices_draft_period_start (one index entry per
# draft of those two months, never the finalized invoices).
_OPEN_DRAFTS = """
    SELECT date_trunc('month', period_start)::date AS month, currency,
           sum(subtotal_cents)::bigint AS subtotal, sum(total_cents)::bigint AS total,
           bool_or(total_cents <> 0) AS pending
    FROM invoices
    WHERE status = 'draft' AND period_start >= :first AND period_start < :last
      AND (CAST(:currency AS text) IS NULL OR currency = :currency) {org}
    GROUP BY 1, 2
"""
_OPEN_DRAFTS_PLATFORM = sa.text(_OPEN_DRAFTS.format(org=""))
_OPEN_DRAFTS_ORGANIZATION = sa.text(_OPEN_DRAFTS.format(org="AND organization_id = :scope_id"))


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def monthly_summary(
    session: Session,
    *,
    scope_id: int,
    years: list[int],
    currency: str | None = None,
    default_currency: str = "USD",
    today: date | None = None,
) -> list[MonthTotals]:
    """Every month of every requested year, per currency, zeros included.

    Reads at most 12 x years x shards rows through the rollup's primary key; cost does not grow
    with the number of invoices. A currency seen in any requested year gets all its months; with
    no data at all, the requested (or default) currency is returned with zeros.

    With `today`, the open months are in it too: the current month and later ones are not
    complete, and the current and previous month add their drafts' amounts (the previous month
    is complete once no draft with an amount is left in it, i.e. its close has run; its empty
    drafts, which the close skips, do not count). The draft read is one indexed query over the
    drafts of those two months (_OPEN_DRAFTS).
    """
    wanted = sorted(set(years))
    found: dict[tuple[date, str], tuple[int, int, int, int]] = {}
    drafts: dict[tuple[date, str], tuple[int, int]] = {}
    incomplete_previous = False
    this_month = month_of(today) if today else None
    if this_month is not None:
        previous = date(
            this_month.year - (this_month.month == 1), (this_month.month - 2) % 12 + 1, 1
        )
        if previous.year in wanted or this_month.year in wanted:
            rows = session.execute(
                _OPEN_DRAFTS_PLATFORM if scope_id == PLATFORM_SCOPE else _OPEN_DRAFTS_ORGANIZATION,
                {
                    "scope_id": scope_id,
                    "first": previous,
                    "last": _next_month(this_month),
                    "currency": currency,
                },
            )
            for month, cur, subtotal, total, pending in rows:
                drafts[(month, cur.strip())] = (int(subtotal), int(total))
                incomplete_previous |= month == previous and bool(pending)
    for ys, ye in _year_runs(wanted):
        rows = session.execute(
            _READ,
            {
                "scope_id": scope_id,
                "first": date(ys, 1, 1),
                "last": date(ye + 1, 1, 1),
                "currency": currency,
            },
        )
        for month, cur, n, subtotal, total, credited in rows:
            found[(month, cur.strip())] = (int(n), int(subtotal), int(total), int(credited))
    seen = {cur for (_, cur) in found} | {cur for (_, cur) in drafts}
    currencies = sorted(seen) or [currency or default_currency]
    out: list[MonthTotals] = []
    for year in wanted:
        for m in range(1, 13):
            month = date(year, m, 1)
            complete = this_month is None or month < this_month
            if this_month is not None and _next_month(month) == this_month:
                complete = not incomplete_previous
            for cur in currencies:
                n, subtotal, total, credited = found.get((month, cur), (0, 0, 0, 0))
                d_subtotal, d_total = drafts.get((month, cur), (0, 0))
                out.append(
                    MonthTotals(
                        year, m, cur, n, subtotal + d_subtotal, total + d_total, complete, credited
                    )
                )
    return out


def _year_runs(years: list[int]) -> list[tuple[int, int]]:
    """Consecutive years as (first, last) runs, so [2024, 2025, 2026] is one range scan."""
    runs: list[tuple[int, int]] = []
    for y in years:
        if runs and runs[-1][1] == y - 1:
            runs[-1] = (runs[-1][0], y)
        else:
            runs.append((y, y))
    return runs


# The truth the rollup must equal, recomputed from invoices and credit notes (no rollup row).
_RECOMPUTE = f"""
    WITH credited AS (
        SELECT invoice_id, sum(total_cents)::bigint AS credited
        FROM credit_notes WHERE status = 'issued' GROUP BY invoice_id
    ),
    counted AS (
        SELECT i.*, coalesce(c.credited, 0) AS credited
        FROM invoices i LEFT JOIN credited c ON c.invoice_id = i.id
        WHERE {counted_sql("i.status")}
    )
    SELECT {PLATFORM_SCOPE}::bigint AS scope_id,
           date_trunc('month', period_start)::date AS month, currency,
           count(*)::bigint AS n, sum(subtotal_cents)::bigint AS subtotal,
           sum(total_cents)::bigint AS total, sum(credited)::bigint AS credited
    FROM counted
    GROUP BY 2, 3
    UNION ALL
    SELECT organization_id, date_trunc('month', period_start)::date, currency,
           count(*), sum(subtotal_cents), sum(total_cents), sum(credited)
    FROM counted
    GROUP BY 1, 2, 3
"""

_DIFF = sa.text(
    f"""
    WITH truth AS ({_RECOMPUTE}),
    stored AS (
        SELECT scope_id, month, currency, sum(invoice_count)::bigint AS n,
               sum(subtotal_cents)::bigint AS subtotal, sum(total_cents)::bigint AS total,
               sum(credited_cents)::bigint AS credited
        FROM invoice_monthly_rollups GROUP BY 1, 2, 3
    )
    SELECT scope_id, month, currency,
           coalesce(t.n, 0), coalesce(s.n, 0),
           coalesce(t.subtotal, 0), coalesce(s.subtotal, 0),
           coalesce(t.total, 0), coalesce(s.total, 0),
           coalesce(t.credited, 0), coalesce(s.credited, 0)
    FROM truth t FULL JOIN stored s USING (scope_id, month, currency)
    WHERE coalesce(t.n, 0) <> coalesce(s.n, 0)
       OR coalesce(t.subtotal, 0) <> coalesce(s.subtotal, 0)
       OR coalesce(t.total, 0) <> coalesce(s.total, 0)
       OR coalesce(t.credited, 0) <> coalesce(s.credited, 0)
    ORDER BY scope_id, month, currency
    """
)


@dataclass(frozen=True)
class RollupDifference:
    scope_id: int
    month: date
    currency: str
    expected: tuple[int, int, int, int]  # invoice count, subtotal, total, credited
    stored: tuple[int, int, int, int]


def verify(session: Session) -> list[RollupDifference]:
    """Every (scope, month, currency) whose stored counters differ from a recomputation."""
    return [
        RollupDifference(
            int(r[0]),
            r[1],
            r[2].strip(),
            (int(r[3]), int(r[5]), int(r[7]), int(r[9])),
            (int(r[4]), int(r[6]), int(r[8]), int(r[10])),
        )
        for r in session.execute(_DIFF)
    ]


def rebuild(session: Session, *, shards: int) -> int:
    """Replace all rollup rows with a recomputation. Caller commits; returns rows written.

    Safe while writers run: the EXCLUSIVE table lock waits for every transaction that already
    wrote a delta to commit, and holds new deltas back until this one commits. The recomputation
    runs after the lock is taken, so it sees every committed status change exactly once.
    """
    session.execute(sa.text("LOCK TABLE invoice_monthly_rollups IN EXCLUSIVE MODE"))
    session.execute(sa.text("DELETE FROM invoice_monthly_rollups"))
    result: sa.CursorResult[tuple[()]] = session.execute(  # type: ignore[assignment]
        sa.text(
            "INSERT INTO invoice_monthly_rollups"
            " (scope_id, month, currency, shard, invoice_count, subtotal_cents, total_cents)"
            + contributions_sql(shards=":shards")
        ),
        {"shards": shards},
    )
    credits: sa.CursorResult[tuple[()]] = session.execute(  # type: ignore[assignment]
        sa.text(
            "INSERT INTO invoice_monthly_rollups AS r"
            " (scope_id, month, currency, shard, invoice_count, subtotal_cents, total_cents,"
            " credited_cents)"
            + credit_contributions_sql(shards=":shards")
            + " ORDER BY 1, 2, 3, 4 ON CONFLICT (scope_id, month, currency, shard) DO UPDATE"
            " SET credited_cents = r.credited_cents + EXCLUDED.credited_cents"
        ),
        {"shards": shards},
    )
    return int(result.rowcount) + int(credits.rowcount)
