"""Outage credits from the events themselves: for a region and a time window, every usage line
is credited exactly the usage its events recorded in that window (times a percentage).

- Finalized invoices (OPEN, UNCOLLECTIBLE, PAID) get one credit note each, one line per
  affected invoice line: by quantity at 100% (the rounding rule of credit notes: half-even
  once, and the whole rest of a line exactly), by amount below. On a PAID invoice the credit
  goes to the customer's balance (Stripe's credit_amount), used by the next invoice.
- Open drafts get one CREDIT line per affected line, through `lifecycle.add_lines` (so the
  draft's totals move the one way they move), quantity 1 at minus the credited amount, so
  its amount is exactly the credit computed here.
- VOID invoices are skipped: nothing is owed on them.
- Idempotent: the incident is a row with its own key (default: derived from region, window,
  products and percent); a second run with the same key credits nothing. Two runs at once
  queue on the key's unique index, and the second finds it taken.

The amount of an affected line: half-even(sum of its events' quantities in the window x
percent / 100 x unit price), the one rounding rule (models/money.py), capped by what earlier
credit notes left on the line.
"""

from __future__ import annotations

import fnmatch
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlmodel import Session, col

from models import tables
from models.errors import InvalidValue
from models.invoices import credit_notes, lifecycle
from models.invoices.credit_notes import CreditLineInput, Settlement
from models.money import line_amount_cents
from models.tables import InvoiceStatus, LineItemKind

MAX_WINDOW_HOURS = 24 * 31


@dataclass(frozen=True)
class Incident:
    region: str
    start: datetime
    end: datetime
    products: str | None  # a glob such as machines-*, or None for every product
    percent: int
    key: str

    @classmethod
    def parse(
        cls,
        *,
        region: str,
        start: str | datetime,
        end: str | datetime,
        products: str | None = None,
        percent: int = 100,
        key: str | None = None,
    ) -> Incident:
        """Validated: times are ISO 8601 with a zone (2026-11-03T10:00Z), start < end, at most
        a month apart; percent 1..100. Raises InvalidValue."""
        t0, t1 = _instant(start, "from"), _instant(end, "to")
        if not region.strip():
            raise InvalidValue("region is required", field=("region",))
        if t0 >= t1:
            raise InvalidValue("the window's end must be after its start", field=("to",))
        if (t1 - t0).total_seconds() > MAX_WINDOW_HOURS * 3600:
            raise InvalidValue("the window is longer than a month", field=("to",))
        if not 1 <= percent <= 100:
            raise InvalidValue("percent is between 1 and 100", field=("percent",))
        products = products.strip() if products and products.strip() else None
        default_key = (
            f"outage:{region}:{t0:%Y-%m-%dT%H:%M:%SZ}:{t1:%Y-%m-%dT%H:%M:%SZ}"
            f":{products or '*'}:{percent}"
        )
        return cls(region.strip(), t0, t1, products, percent, key or default_key)

    def matches(self, product: str) -> bool:
        return self.products is None or fnmatch.fnmatchcase(product, self.products)

    def describe(self) -> str:
        what = f"{self.products} " if self.products else ""
        pct = "" if self.percent == 100 else f", {self.percent}%"
        return (
            f"Outage credit: {what}in {self.region}, "
            f"{self.start:%Y-%m-%d %H:%M}-{self.end:%Y-%m-%d %H:%M} UTC{pct}"
        )


def _instant(value: str | datetime, name: str) -> datetime:
    if isinstance(value, datetime):
        parsed = value
    else:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidValue(
                f"{name}: {value!r} is not an ISO 8601 time", field=(name,)
            ) from None
    if parsed.tzinfo is None:
        raise InvalidValue(f"{name}: give a time zone (Z for UTC)", field=(name,))
    return parsed.astimezone(UTC)


@dataclass(frozen=True)
class AffectedLine:
    invoice_id: int
    item_id: int
    item_public_id: str
    description: str
    product: str
    unit_price: Decimal
    quantity: Decimal  # the events' quantity in the window (before the percentage)
    amount_cents: int  # what the line is credited


@dataclass
class OrganizationCredit:
    slug: str
    currency: str
    cents: int = 0
    credit_notes: int = 0
    draft_lines: int = 0


@dataclass
class Plan:
    incident: Incident
    organizations: list[OrganizationCredit] = field(default_factory=list)
    credit_notes: int = 0
    draft_lines: int = 0
    already_done: bool = False

    @property
    def cents(self) -> int:
        return sum(o.cents for o in self.organizations)


# Events in the window joined to the usage line they were aggregated into (the line key of
# models/usage/staging.py). The window bounds the partition scan of usage_events.
_AFFECTED = sa.text(
    """
    SELECT l.invoice_id, l.id, l.public_id, l.description, l.product, l.unit_price,
           sum(e.quantity) AS quantity, i.status, o.slug, i.currency
    FROM usage_events e
    JOIN invoice_items l
      ON l.invoice_id = e.invoice_id AND l.price_id = e.price_id AND l.product = e.product
     AND l.app IS NOT DISTINCT FROM e.app AND l.region IS NOT DISTINCT FROM e.region
     AND l.period_start = e.period_start
    JOIN invoices i ON i.id = l.invoice_id
    JOIN organizations o ON o.id = i.organization_id
    WHERE e.region = :region AND e.occurred_at >= :t0 AND e.occurred_at < :t1
      AND i.status <> 'void'
    GROUP BY l.invoice_id, l.id, l.public_id, l.description, l.product, l.unit_price,
             i.status, o.slug, i.currency
    ORDER BY l.invoice_id, l.id
    """
)


def affected(session: Session, incident: Incident) -> list[tuple[AffectedLine, str, str, str]]:
    """Each affected line with its invoice's status, organization slug and currency."""
    out = []
    for r in session.execute(
        _AFFECTED, {"region": incident.region, "t0": incident.start, "t1": incident.end}
    ):
        if not incident.matches(r.product):
            continue
        quantity = Decimal(r.quantity)
        amount = line_amount_cents(quantity * incident.percent / 100, Decimal(r.unit_price))
        if amount <= 0:
            continue
        line = AffectedLine(
            r.invoice_id,
            r.id,
            r.public_id,
            r.description,
            r.product,
            Decimal(r.unit_price),
            quantity,
            amount,
        )
        out.append((line, r.status, r.slug, r.currency.strip()))
    return out


def run(
    session: Session,
    incident: Incident,
    *,
    dry_run: bool,
    created_by: str,
    now: datetime,
    rollup_shards: int,
) -> Plan:
    """Credit (or, with dry_run, only compute) the incident. Caller commits, then the sweeper
    syncs the credit notes (their invoices' outbox rows are made due). Returns what was, or
    would be, credited per organization; `already_done` when the key was used before."""
    plan = Plan(incident)
    taken = session.execute(
        sa.select(col(tables.OutageIncident.id)).where(
            col(tables.OutageIncident.key) == incident.key
        )
    ).first()
    if taken is not None:
        plan.already_done = True
        return plan
    incident_id: int | None = None
    if not dry_run:
        incident_id = session.execute(
            sa.text(
                "INSERT INTO outage_incidents (key, region, window_from, window_to, products,"
                " percent, created_by, created_at) VALUES (:key, :region, :t0, :t1, :products,"
                " :percent, :by, :now) ON CONFLICT (key) DO NOTHING RETURNING id"
            ),
            {
                "key": incident.key,
                "region": incident.region,
                "t0": incident.start,
                "t1": incident.end,
                "products": incident.products,
                "percent": incident.percent,
                "by": created_by,
                "now": now,
            },
        ).scalar_one_or_none()
        if incident_id is None:  # a concurrent run committed the same key first
            plan.already_done = True
            return plan
    by_invoice: dict[int, list[AffectedLine]] = defaultdict(list)
    info: dict[int, tuple[str, str, str]] = {}
    for line, status, slug, currency in affected(session, incident):
        by_invoice[line.invoice_id].append(line)
        info[line.invoice_id] = (status, slug, currency)
    orgs: dict[tuple[str, str], OrganizationCredit] = {}
    for invoice_id in sorted(by_invoice):
        status, slug, currency = info[invoice_id]
        org = orgs.setdefault((slug, currency), OrganizationCredit(slug, currency))
        lines = by_invoice[invoice_id]
        if status == InvoiceStatus.DRAFT:
            org.cents += _credit_draft(session, invoice_id, lines, incident, dry_run, now=now)
            org.draft_lines += len(lines)
        else:
            cents = _credit_finalized(
                session,
                invoice_id,
                lines,
                incident,
                dry_run,
                paid=status == InvoiceStatus.PAID,
                created_by=created_by,
                now=now,
                rollup_shards=rollup_shards,
                incident_id=incident_id,
            )
            if cents:
                org.cents += cents
                org.credit_notes += 1
    plan.organizations = sorted(
        (o for o in orgs.values() if o.cents), key=lambda o: (o.slug, o.currency)
    )
    plan.credit_notes = sum(o.credit_notes for o in plan.organizations)
    plan.draft_lines = sum(o.draft_lines for o in plan.organizations)
    if incident_id is not None:
        row = session.get_one(tables.OutageIncident, incident_id)
        row.credit_notes = plan.credit_notes
        row.draft_lines = plan.draft_lines
        row.credited_cents = plan.cents
        row.summary = [
            {
                "slug": o.slug,
                "currency": o.currency,
                "cents": o.cents,
                "credit_notes": o.credit_notes,
                "draft_lines": o.draft_lines,
            }
            for o in plan.organizations
        ]
        session.flush()
    return plan


def _credit_draft(
    session: Session,
    invoice_id: int,
    lines: Sequence[AffectedLine],
    incident: Incident,
    dry_run: bool,
    *,
    now: datetime,
) -> int:
    if not dry_run:
        lifecycle.add_lines(
            session,
            session.get_one(tables.Invoice, invoice_id),
            [
                lifecycle.LineInput(
                    kind=LineItemKind.CREDIT,
                    description=f"{incident.describe()}: {line.description}",
                    product=line.product,
                    unit="credit",
                    quantity=Decimal(1),
                    unit_price=Decimal(-line.amount_cents),
                    region=incident.region,
                    metadata={
                        "incident": incident.key,
                        "credited_line": line.item_public_id,
                        "quantity": str(line.quantity),
                        "percent": incident.percent,
                    },
                )
                for line in lines
            ],
            now=now,
        )
    return sum(line.amount_cents for line in lines)


def _credit_finalized(
    session: Session,
    invoice_id: int,
    lines: Sequence[AffectedLine],
    incident: Incident,
    dry_run: bool,
    *,
    paid: bool,
    created_by: str,
    now: datetime,
    rollup_shards: int,
    incident_id: int | None,
) -> int:
    left = credit_notes.remaining_by_item(session, invoice_id)
    inputs: list[CreditLineInput] = []
    total = 0
    for line in lines:
        rest_amount, rest_quantity = left.get(line.item_id, (0, Decimal(0)))
        if rest_amount <= 0:
            continue  # credited already (an overlapping incident, a manual credit note)
        whole = line.quantity == rest_quantity
        if incident.percent == 100 and (
            whole or (line.quantity < rest_quantity and line.amount_cents <= rest_amount)
        ):
            # By quantity, as credit notes compute it: the whole rest of a line exactly.
            inputs.append(CreditLineInput(line_item_id=line.item_public_id, quantity=line.quantity))
            total += rest_amount if whole else line.amount_cents
        else:
            amount = min(line.amount_cents, rest_amount)
            inputs.append(CreditLineInput(line_item_id=line.item_public_id, amount_cents=amount))
            total += amount
    if not inputs or dry_run:
        return total
    note = credit_notes.issue(
        session,
        session.get_one(tables.Invoice, invoice_id),
        reason=tables.CreditNoteReason.PRODUCT_UNSATISFACTORY,
        memo=f"{incident.describe()} [{incident.key}]",
        lines=inputs,
        settlement=Settlement(credit_balance_cents=total) if paid else None,
        created_by=created_by,
        now=now,
        rollup_shards=rollup_shards,
        incident_id=incident_id,
    )
    return note.total_cents
