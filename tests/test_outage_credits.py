"""Outage credits from the events themselves: equal to a hand computation from the events in
the window, credit notes on finalized invoices and CREDIT lines on drafts, idempotent, and a
dry run that writes nothing."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_EVEN, Decimal

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from models import rollup, tables
from models.invoices import lifecycle, outage_credits
from models.usage import ingest
from tests.factories import SHARDS, make_org
from tests.test_usage import CPU_PRICE, NOW, ev, seed_prices

DEMO_NOW = datetime(2026, 11, 3, 15, 0, tzinfo=UTC)
T0 = NOW - timedelta(hours=6)  # the outage: [T0, T0 + 2h) in iad
T1 = T0 + timedelta(hours=2)


def _record(db: Session, events: list[ingest.UsageEventInput]) -> None:
    result = ingest.record_usage(db, events, now=NOW)
    assert not result.rejected, result.rejected


def _count(db: Session, table: str) -> int:
    return int(db.execute(sa.text(f"SELECT count(*) FROM {table}")).scalar_one())


def _cents(quantity: str, price: Decimal, percent: int = 100) -> int:
    """The hand computation: quantity in the window x percent x price, half-even once."""
    exact = Decimal(quantity) * percent / 100 * price
    return int(exact.quantize(Decimal(1), rounding=ROUND_HALF_EVEN))


def _world(db: Session) -> tuple[tables.Organization, tables.Organization, tables.Invoice]:
    seed_prices(db)
    acme, beta = make_org(db, slug="acme"), make_org(db, slug="beta")
    make_org(db, slug="gamma")
    at = T0 + timedelta(minutes=30)
    _record(
        db,
        [
            # acme: two lines hit (cpu and egress in iad), one outside the window, one elsewhere
            ev(org="acme", region="iad", quantity="360000", at=at),
            ev(org="acme", region="iad", quantity="180000", at=T1 - timedelta(seconds=1)),
            ev(org="acme", region="iad", quantity="7200", at=T1),  # the end is exclusive
            ev(org="acme", region="iad", product="egress", quantity="12.5", at=at),
            ev(org="acme", region="ams", quantity="999", at=at),
            # beta: one line hit, on a draft that stays open
            ev(org="beta", region="iad", app="api", quantity="1000000", at=at),
            # gamma: only outside the region
            ev(org="gamma", region="fra", quantity="100", at=at),
        ],
    )
    acme_draft = db.exec(
        select(tables.Invoice).where(tables.Invoice.organization_id == acme.id)
    ).one()
    acme_invoice = lifecycle.finalize(db, acme_draft, now=NOW, rollup_shards=SHARDS)
    return acme, beta, acme_invoice


def _incident(percent: int = 100, products: str | None = None) -> outage_credits.Incident:
    return outage_credits.Incident.parse(
        region="iad",
        start=T0.isoformat().replace("+00:00", "Z"),
        end=T1.isoformat(),
        percent=percent,
        products=products,
    )


def _run(
    db: Session, incident: outage_credits.Incident, *, dry_run: bool = False
) -> outage_credits.Plan:
    return outage_credits.run(
        db, incident, dry_run=dry_run, created_by="test", now=NOW, rollup_shards=SHARDS
    )


def test_outage_credit_equals_the_events_in_the_window_and_runs_once(db: Session) -> None:
    acme, beta, invoice = _world(db)
    cpu = _cents("540000", CPU_PRICE)  # 360000 + 180000 seconds; 7200 at T1 is outside
    egress = _cents("12.5", Decimal(2))
    beta_cpu = _cents("1000000", CPU_PRICE)
    dry = _run(db, _incident(), dry_run=True)
    assert [(o.slug, o.cents, o.credit_notes, o.draft_lines) for o in dry.organizations] == [
        ("acme", cpu + egress, 1, 0),
        ("beta", beta_cpu, 0, 1),
    ]
    assert _count(db, "credit_notes") == 0 and _count(db, "outage_incidents") == 0
    done = _run(db, _incident())
    assert [(o.slug, o.cents) for o in done.organizations] == [
        (o.slug, o.cents) for o in dry.organizations
    ]
    note = db.exec(select(tables.CreditNote)).one()
    assert note.invoice_id == invoice.id and note.total_cents == cpu + egress
    assert note.incident_id is not None
    lines = db.exec(select(tables.CreditNoteLine)).all()
    assert sorted(ln.amount_cents for ln in lines) == sorted([cpu, egress])
    credit = db.exec(
        select(tables.InvoiceItem).where(tables.InvoiceItem.kind == tables.LineItemKind.CREDIT)
    ).one()
    assert credit.amount_cents == -beta_cpu
    beta_draft = db.get_one(tables.Invoice, credit.invoice_id)
    assert beta_draft.organization_id == beta.id and beta_draft.status == "draft"
    # Again: the incident's key is taken, nothing more is credited.
    again = _run(db, _incident())
    assert again.already_done and again.organizations == []
    assert _count(db, "credit_notes") == 1
    assert rollup.verify(db) == []
    assert acme.id is not None


def test_percent_and_product_filter(db: Session) -> None:
    _world(db)
    plan = _run(db, _incident(percent=50, products="machines-*"), dry_run=True)
    assert [(o.slug, o.cents) for o in plan.organizations] == [
        ("acme", _cents("540000", CPU_PRICE, 50)),
        ("beta", _cents("1000000", CPU_PRICE, 50)),
    ]


def test_outage_credit_on_the_demo_data(committed: sessionmaker[Session]) -> None:
    """`make run`'s data: a dry run and a real run over one region and hour, as the README's
    runbook does it (the CLI's arguments parse into the same call)."""
    from cli import build_parser
    from demo import seed
    from models.usage import verify

    seed.run(committed, now=DEMO_NOW, shards=SHARDS, out=io.StringIO())
    with committed() as s:
        region, hour = s.execute(
            sa.text(
                "SELECT region, date_trunc('hour', occurred_at) FROM usage_events"
                " WHERE region IS NOT NULL GROUP BY 1, 2 ORDER BY count(*) DESC, 1, 2 LIMIT 1"
            )
        ).one()
    start, end = hour.astimezone(UTC), hour.astimezone(UTC) + timedelta(hours=1)
    args = build_parser().parse_args(
        [
            "credit",
            "outage",
            "--region",
            region,
            "--from",
            f"{start:%Y-%m-%dT%H:%MZ}",
            "--to",
            f"{end:%Y-%m-%dT%H:%MZ}",
            "--dry-run",
        ]
    )
    incident = outage_credits.Incident.parse(
        region=args.region,
        start=args.start,
        end=args.end,
        products=args.products,
        percent=args.percent,
        key=args.key,
    )
    runs = []
    for dry_run in (True, False, False):
        with committed() as s, s.begin():
            runs.append(
                outage_credits.run(
                    s,
                    incident,
                    dry_run=dry_run,
                    created_by="test",
                    now=DEMO_NOW,
                    rollup_shards=SHARDS,
                )
            )
    dry, real, again = runs
    assert dry.organizations and dry.cents > 0
    assert [(o.slug, o.cents) for o in real.organizations] == [
        (o.slug, o.cents) for o in dry.organizations
    ]
    assert again.already_done and again.organizations == []
    with committed() as s:
        assert rollup.verify(s) == [] and verify.verify(s) == []
        credited = s.execute(
            sa.text(
                "SELECT coalesce(sum(-amount_cents), 0) FROM invoice_items WHERE kind = 'credit'"
                " AND metadata->>'incident' = :k"
            ),
            {"k": incident.key},
        ).scalar_one()
        noted = s.execute(
            sa.text("SELECT coalesce(sum(total_cents), 0) FROM credit_notes")
        ).scalar_one()
    assert int(credited) + int(noted) == real.cents
