"""Test data as plain functions with state keywords: make_invoice(db, org, status="open")."""

from __future__ import annotations

import itertools
from datetime import UTC, date, datetime
from decimal import Decimal

from sqlmodel import Session

from models import organizations, tables
from models.invoices import lifecycle
from models.invoices.lifecycle import LineInput
from models.tables import LineItemKind, TokenScope

NOW = datetime(2026, 3, 5, 12, 0, tzinfo=UTC)
SHARDS = 4
_counter = itertools.count(1)


def make_org(db: Session, *, slug: str | None = None, currency: str = "USD") -> tables.Organization:
    n = next(_counter)
    slug = slug or f"org-{n}"
    return organizations.create(
        db,
        slug=slug,
        name=f"Org {n}",
        billing_email=f"billing@{slug}.example",
        default_currency=currency,
    )


def make_token(db: Session, org: tables.Organization | None, *, admin: bool = False) -> str:
    scope = TokenScope.ADMIN if admin else TokenScope.MEMBER
    plaintext, _ = organizations.create_token(db, scope=scope, organization=org, name="test")
    return plaintext


def usage_line(
    *,
    quantity: str = "1234.5",
    unit_price: str = "0.0000268",
    product: str = "machines-shared-cpu",
    app: str = "web",
    region: str = "ams",
    kind: LineItemKind = LineItemKind.USAGE,
) -> LineInput:
    return LineInput(
        kind=kind,
        description=f"{product} in {region}",
        product=product,
        unit="second",
        quantity=Decimal(quantity),
        unit_price=Decimal(unit_price),
        app=app,
        region=region,
    )


def make_invoice(
    db: Session,
    org: tables.Organization,
    *,
    status: str = "draft",
    lines: int = 3,
    currency: str | None = None,
    period_start: date = date(2026, 2, 1),
    period_end: date = date(2026, 3, 1),
    unit_price: str = "250",
    now: datetime = NOW,
) -> tables.Invoice:
    inv = lifecycle.create_draft(
        db,
        org,
        currency=currency or org.default_currency,
        period_start=period_start,
        period_end=period_end,
        now=now,
    )
    if lines:
        lifecycle.add_lines(
            db,
            inv,
            [
                usage_line(quantity=str(i + 1), unit_price=unit_price, region="fra")
                for i in range(lines)
            ],
            now=now,
        )
    if status == "draft":
        return inv
    inv = lifecycle.finalize(db, inv, now=now, rollup_shards=SHARDS)
    if status == "paid":
        inv = lifecycle.mark_paid(db, inv, now=now, paid_on=lifecycle.PaidOn.STRIPE)
    elif status == "void":
        inv = lifecycle.void(db, inv, now=now, rollup_shards=SHARDS)
    elif status == "uncollectible":
        inv = lifecycle.mark_uncollectible(db, inv, now=now)
    return inv
