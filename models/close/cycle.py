"""The month-end close, step by step: open a period's run, claim drafts, close one draft
(recurring lines, then `lifecycle.finalize`), record what happened. `models.close.driver.run` drives
these steps, one transaction per claim and one per chunk (`models.close.chunk` does a chunk's
drafts together, with these rules; `close_invoice` is the per-invoice fallback); none of them
commits.

Decisions:
- Which drafts: the period's usage drafts (`usage_drafts`), the ones the cycle owns. An
  organization with an active subscription and no usage gets a draft at the start of the run
  (`create_missing_drafts`, in batches), so its plan is billed; an organization with neither has no draft and gets no invoice. Drafts
  made by hand with `createInvoice` are finalized by hand, as before.
- Recurring lines: one SUBSCRIPTION line per subscription overlapping the period, for the whole
  period (no proration: a plan started mid-month costs the month), priced from `prices` at the
  period start (midnight UTC of the first), so a price change during the month applies from the
  next one. No price in the draft's currency is a failure of that invoice (UNKNOWN_PRODUCT).
- An empty draft (no lines after the recurring ones) is not finalized as a zero invoice: it stays
  an empty DRAFT, recorded as skipped, and is not claimed again while it stays empty. If usage
  lands on it later, the next run (or beat tick) finalizes it.
- Exactly once: `lifecycle.finalize` locks the invoice row and refuses anything but a DRAFT, so a
  draft claimed twice (a killed closer's chunk taken over) is finalized once; the second sees
  OPEN and reports it as already done. The same row lock orders the finalize with racing usage
  (`staging.place` locks it FOR NO KEY UPDATE and re-reads the status): an event either gets
  in before, and is on the invoice, or after, sees OPEN and goes to the next draft as late usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from enum import StrEnum
from typing import NamedTuple

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.errors import DomainError, InvalidValue, UnknownProduct
from models.ids import new_public_id
from models.invoices import describe, lifecycle
from models.invoices.lifecycle import LineInput
from models.prices import PriceBook, load_book
from models.tables import InvoiceStatus, LineItemKind
from models.usage import staging


class Outcome(StrEnum):
    FINALIZED = "finalized"
    SKIPPED = "skipped"
    FAILED = "failed"
    ALREADY = "already"  # finalized before we got to it (another closer, or by hand)


def parse_period(text: str) -> date:
    """'2026-11' -> date(2026, 11, 1). Raises InvalidValue."""
    try:
        d = datetime.strptime(text.strip(), "%Y-%m").date()
    except ValueError:
        raise InvalidValue("period must be YYYY-MM, such as 2026-11", field=("period",)) from None
    return d


def period_end(period: date) -> date:
    return staging.next_month(period)


def midnight(d: date) -> datetime:
    return datetime.combine(d, time(), tzinfo=UTC)


def previous_month(d: date) -> date:
    return date(d.year - (d.month == 1), (d.month - 2) % 12 + 1, 1)


def due_period(now: datetime, *, grace: timedelta) -> date:
    """The period beat should close at `now`: the previous month once `grace` has passed since
    it ended (late events still land on their own invoice during the grace), before that the
    month before it (long closed: a run finds nothing to do, or finishes a stalled close)."""
    current = staging.month_of(now.astimezone(UTC))
    if now >= midnight(current) + grace:
        return previous_month(current)
    return previous_month(previous_month(current))


def open_run(session: Session, period: date, *, now: datetime) -> tables.BillingRun:
    """Start (or resume) the close of `period`: the billing_runs row. The drafts of subscribed
    organizations without usage come next, from `create_missing_drafts`. Caller commits."""
    session.execute(
        sa.text(
            "INSERT INTO billing_runs (period_start, started_at, updated_at) VALUES (:p, :now, :now) "
            "ON CONFLICT (period_start) DO UPDATE SET finished_at = NULL, updated_at = :now"
        ),
        {"p": period, "now": now},
    )
    return refresh_run(session, period, now=now)


# Organizations with a subscription billing the period and no draft for it, in id order.
_UNDRAFTED = sa.text(
    "SELECT DISTINCT s.organization_id FROM subscriptions s "
    "WHERE s.since < :end AND (s.until IS NULL OR s.until > :start) "
    "AND NOT EXISTS (SELECT 1 FROM usage_drafts d WHERE d.organization_id = "
    "s.organization_id AND d.period_start = :start) ORDER BY 1 LIMIT :n"
)

# The lock the ingest takes before it creates an organization's draft (staging._create),
# for many organizations, in id order.
_DRAFT_LOCKS = sa.text(
    "SELECT count(pg_advisory_xact_lock(:ns, CAST(o % 2147483647 AS integer))) "
    "FROM (SELECT unnest(CAST(:orgs AS bigint[])) AS o ORDER BY 1) AS x"
)

# The drafts (and their usage_drafts rows) of those still without one once the locks are held.
_CREATE_DRAFTS = sa.text(
    "WITH todo AS (SELECT o.id, o.default_currency, w.public_id "
    "FROM unnest(CAST(:orgs AS bigint[]), CAST(:public_ids AS text[])) AS w(org, public_id) "
    "JOIN organizations o ON o.id = w.org WHERE NOT EXISTS (SELECT 1 FROM usage_drafts d "
    "WHERE d.organization_id = w.org AND d.period_start = :start)), "
    "made AS (INSERT INTO invoices (public_id, organization_id, status, currency, period_start, "
    "period_end, created_at, updated_at) SELECT public_id, id, :draft, default_currency, :start, "
    ":end, :now, :now FROM todo ORDER BY id RETURNING id, organization_id) "
    "INSERT INTO usage_drafts (organization_id, period_start, invoice_id) "
    "SELECT organization_id, :start, id FROM made"
)


def create_missing_drafts(session: Session, period: date, *, now: datetime, limit: int) -> int:
    """An empty DRAFT of `period` (and its usage_drafts row) for up to `limit` organizations
    with an active subscription but no draft yet, so their plan is billed. Returns how many
    organizations it dealt with: fewer than `limit` means none is left. Caller commits; the
    driver calls it in a transaction per batch.

    Why batches, and set-based: at 50,000 such organizations, one transaction through the
    ingest's `staging.place` (one ORM draft and one advisory lock each) exhausted
    PostgreSQL's shared lock table (max_locks_per_transaction x max_connections: 6,400 on this
    server) after minutes. Here a batch takes the ingest's advisory lock of each organization
    in id order (so a first event of the month racing us creates no second draft: whoever
    locks second sees the other's draft), then creates the missing drafts in one statement."""
    orgs = [
        int(o)
        for o in session.execute(
            _UNDRAFTED, {"start": period, "end": period_end(period), "n": limit}
        ).scalars()
    ]
    if not orgs:
        return 0
    session.execute(_DRAFT_LOCKS, {"ns": staging.DRAFT_LOCK_NAMESPACE, "orgs": orgs})
    session.execute(
        _CREATE_DRAFTS,
        {
            "orgs": orgs,
            "public_ids": [new_public_id("inv") for _ in orgs],
            "start": period,
            "end": period_end(period),
            "now": now,
            "draft": InvoiceStatus.DRAFT.value,
        },
    )
    return len(orgs)


class Claimed(NamedTuple):
    invoice_id: int
    organization_id: int


def claim(
    session: Session,
    period: date,
    *,
    limit: int,
    failed_since: datetime,
    after_organization: int | None = None,
) -> list[Claimed]:
    """Up to `limit` drafts of the period still to close, locked until the caller's transaction
    ends (`FOR UPDATE OF d SKIP LOCKED` on their usage_drafts rows, organization order, on
    ix_usage_drafts_period_start_organization_id): two closers get disjoint chunks, and a
    killed closer's chunk is free again as soon as its connection is gone.

    `after_organization` starts the scan past the closer's previous chunk: without it every
    claim walks the index over all the drafts finalized so far (quadratic in the period's size).
    A closer that finds nothing past its cursor claims once more from the start (what it
    skipped while another closer held it) before it stops.

    Left out: drafts skipped as empty that are still empty, and drafts that failed since
    `failed_since` (this pass: retried by the next run, not in a loop by this one)."""
    rows = session.execute(
        sa.text(
            "SELECT d.invoice_id, d.organization_id FROM usage_drafts d "
            "JOIN invoices i ON i.id = d.invoice_id "
            "WHERE d.period_start = :p AND d.organization_id > :after AND i.status = 'draft' "
            "AND NOT EXISTS (SELECT 1 FROM billing_run_invoices b WHERE b.invoice_id = "
            "d.invoice_id AND ((b.outcome = :skipped AND i.line_item_count = 0) "
            "OR (b.outcome = :failed AND b.at >= :since))) "
            "ORDER BY d.organization_id LIMIT :n FOR UPDATE OF d SKIP LOCKED"
        ),
        {
            "p": period,
            "after": -1 if after_organization is None else after_organization,
            "since": failed_since,
            "n": limit,
            "skipped": Outcome.SKIPPED.value,
            "failed": Outcome.FAILED.value,
        },
    ).all()
    return [Claimed(int(r.invoice_id), int(r.organization_id)) for r in rows]


@dataclass(frozen=True)
class Closed:
    outcome: Outcome
    invoice: tables.Invoice


def close_invoice(
    session: Session, invoice_id: int, *, now: datetime, rollup_shards: int
) -> Closed:
    """DRAFT -> OPEN for one draft of the close: its recurring lines, then `lifecycle.finalize`
    (number, totals, outbox row, rollup delta), and its billing_run_invoices row; or, with no
    lines at all, SKIPPED (left an empty draft). ALREADY when it is no draft any more. Raises
    DomainError (UNKNOWN_PRODUCT: a plan with no price). Caller commits, then enqueues the sync."""
    inv = lifecycle.get_for_update(session, invoice_id)
    if inv.status != InvoiceStatus.DRAFT:
        return Closed(Outcome.ALREADY, inv)
    lines = recurring_lines(session, inv)
    if lines:
        lifecycle.add_lines(session, inv, lines, now=now)
    if inv.line_item_count == 0 and not _has_lines(session, invoice_id):
        _record(session, inv, Outcome.SKIPPED, now=now)
        return Closed(Outcome.SKIPPED, inv)
    inv = lifecycle.finalize(session, inv, now=now, rollup_shards=rollup_shards)
    _record(session, inv, Outcome.FINALIZED, now=now)
    return Closed(Outcome.FINALIZED, inv)


def _has_lines(session: Session, invoice_id: int) -> bool:
    return (
        session.execute(
            sa.text("SELECT 1 FROM invoice_items WHERE invoice_id = :i LIMIT 1"), {"i": invoice_id}
        ).first()
        is not None
    )


def recurring_lines(session: Session, inv: tables.Invoice) -> list[LineInput]:
    """The SUBSCRIPTION lines of the invoice's organization for its period, each priced by the
    version in effect at the period start (the organization's override first)."""
    s = tables.Subscription
    subs = session.exec(
        select(s)
        .where(
            col(s.organization_id) == inv.organization_id,
            col(s.since) < inv.period_end,
            sa.or_(col(s.until).is_(None), col(s.until) > inv.period_start),
        )
        .order_by(col(s.id))
    ).all()
    if not subs:
        return []
    currency = inv.currency.strip()
    book = load_book(
        session,
        products=[x.product for x in subs],
        currencies=[currency],
        organization_ids=[inv.organization_id],
        until=midnight(inv.period_start),
    )
    return plan_lines(
        subs,
        book,
        organization_id=inv.organization_id,
        currency=currency,
        period_start=inv.period_start,
        period_end=inv.period_end,
    )


def overlaps(sub: tables.Subscription, period_start: date, period_end: date) -> bool:
    """The subscription bills this period (the predicate of `recurring_lines`' query)."""
    return sub.since < period_end and (sub.until is None or sub.until > period_start)


def plan_lines(
    subs: Sequence[tables.Subscription],
    book: PriceBook,
    *,
    organization_id: int,
    currency: str,
    period_start: date,
    period_end: date,
) -> list[LineInput]:
    """The lines of these subscriptions (already known to overlap the period, in id order),
    priced from `book` at the period start. Raises UnknownProduct (a plan with no price)."""
    at = midnight(period_start)
    lines: list[LineInput] = []
    for sub in subs:
        price = book.lookup(organization_id, sub.product, currency, at)
        if price is None:
            raise UnknownProduct(
                f"no {currency} price for {sub.product!r} at {at:%Y-%m-%d}: the plan of "
                f"subscription {sub.id} cannot be billed",
                field=("subscriptions", str(sub.id)),
            )
        lines.append(
            LineInput(
                kind=LineItemKind.SUBSCRIPTION,
                description=describe.recurring_line(sub.description, period_start),
                product=sub.product,
                unit=price.unit,
                quantity=sub.quantity,
                unit_price=price.unit_price,
                period_start=period_start,
                period_end=period_end,
                metadata={"subscription_id": sub.id, "price_id": price.id},
            )
        )
    return lines


def _record(
    session: Session,
    inv: tables.Invoice,
    outcome: Outcome,
    *,
    now: datetime,
    code: str | None = None,
    message: str | None = None,
) -> None:
    session.execute(
        sa.text(
            "INSERT INTO billing_run_invoices AS b (invoice_id, period_start, outcome, "
            "error_code, error_message, at) VALUES (:i, :p, :o, :c, :m, :now) "
            "ON CONFLICT (invoice_id) DO UPDATE SET outcome = EXCLUDED.outcome, "
            "attempts = b.attempts + 1, error_code = EXCLUDED.error_code, "
            "error_message = EXCLUDED.error_message, at = EXCLUDED.at"
        ),
        {
            "i": inv.id,
            "p": inv.period_start,
            "o": outcome.value,
            "c": code,
            "m": message,
            "now": now,
        },
    )


def record_outcomes(
    session: Session, invoice_ids: Sequence[int], outcome: Outcome, *, now: datetime
) -> None:
    """`_record` of one outcome for many invoices in one statement (the set-based close), in id
    order. Caller commits."""
    session.execute(
        sa.text(
            "INSERT INTO billing_run_invoices AS b (invoice_id, period_start, outcome, at) "
            "SELECT i.id, i.period_start, :o, :now FROM invoices i "
            "WHERE i.id = ANY(CAST(:ids AS bigint[])) ORDER BY i.id "
            "ON CONFLICT (invoice_id) DO UPDATE SET outcome = EXCLUDED.outcome, "
            "attempts = b.attempts + 1, error_code = NULL, error_message = NULL, at = EXCLUDED.at"
        ),
        {"ids": list(invoice_ids), "o": outcome.value, "now": now},
    )


def record_failure(
    session: Session, invoice_id: int, error: BaseException, *, now: datetime
) -> str:
    """Record why closing one draft failed (its code and message), and make it the run's last
    error. Returns the message. Caller commits (in a fresh transaction: the failed one rolled
    back)."""
    inv = session.get_one(tables.Invoice, invoice_id)
    if isinstance(error, DomainError):
        code, message = str(error.code), error.message
    else:
        code, message = "INTERNAL_ERROR", f"{type(error).__name__}: {error}"[:1000]
    _record(session, inv, Outcome.FAILED, now=now, code=code, message=message)
    text = f"{inv.public_id}: {code}: {message}"
    session.execute(
        sa.text(
            "UPDATE billing_runs SET last_error = :e, updated_at = :now WHERE period_start = :p"
        ),
        {"e": text, "now": now, "p": inv.period_start},
    )
    return text


def remaining(session: Session, period: date) -> int:
    """Drafts of the period that still need a closer (locked or not), failed ones included."""
    return int(
        session.execute(
            sa.text(
                "SELECT count(*) FROM usage_drafts d JOIN invoices i ON i.id = d.invoice_id "
                "WHERE d.period_start = :p AND i.status = 'draft' AND NOT EXISTS ("
                "SELECT 1 FROM billing_run_invoices b WHERE b.invoice_id = d.invoice_id "
                "AND b.outcome = 'skipped' AND i.line_item_count = 0)"
            ),
            {"p": period},
        ).scalar_one()
    )


def refresh_run(
    session: Session, period: date, *, now: datetime, finish: bool = False
) -> tables.BillingRun:
    """Recompute the run's counters from billing_run_invoices (exact, whoever closed what, even
    after a killed closer), and set finished_at when `finish` and nothing is left to close.
    Caller commits."""
    counts = dict(
        session.execute(
            sa.text(
                "SELECT outcome, count(*) FROM billing_run_invoices WHERE period_start = :p "
                "GROUP BY outcome"
            ),
            {"p": period},
        ).all()
    )
    drafts = session.execute(
        sa.text("SELECT count(*) FROM usage_drafts WHERE period_start = :p"), {"p": period}
    ).scalar_one()
    left = remaining(session, period) if finish else None
    run = session.exec(
        select(tables.BillingRun)
        .where(col(tables.BillingRun.period_start) == period)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()
    run.drafts = int(drafts)
    run.finalized = int(counts.get("finalized", 0))
    run.skipped = int(counts.get("skipped", 0))
    run.failed = int(counts.get("failed", 0))
    if finish and left == run.failed and run.finished_at is None:
        run.finished_at = now
    run.updated_at = now
    session.flush()
    return run


def get_run(session: Session, period: date) -> tables.BillingRun | None:
    """The run of `period`, re-read from the database."""
    return session.get(tables.BillingRun, period, populate_existing=True)


def last_run(session: Session) -> tables.BillingRun | None:
    """The most recent period with a run."""
    return session.exec(
        select(tables.BillingRun).order_by(col(tables.BillingRun.period_start).desc()).limit(1)
    ).first()
