"""Demo data: six organizations with 14 months of Fly.io-like usage invoices, and tokens.

Everything goes through the domain functions (`organizations.create`, `lifecycle.create_draft`,
`add_lines`, `finalize`, `mark_paid`, `void`, `mark_uncollectible`), so numbering, outbox rows
and the rollup are exactly what the API would have written. The data loads once, in one
transaction (a crash leaves nothing half-seeded).

Tokens: a token's plaintext cannot be recovered from its stored hash, so `billing run` keeps the
demo tokens in `.local/demo-tokens.json` (gitignored, like the rest of `.local/`) and reuses the
ones that still work on the next run; `billing tokens` prints them again. Whenever a demo token
is minted for a name, the earlier demo tokens for that name are revoked, so there is always one
live demo token per organization and one admin, not seven more per run.

One invoice (tiny-ci's last finalized month) is seeded as a FAILED sync, the way a refused
customer leaves it, so the operators' panel and its Resync button can be tried right away.

The month-end close can be tried on the demo too: the previous month is left as the close finds
it, usage drafts (ingested as events, received during that month) that nobody finalized yet, and
the support plans are `subscriptions` rows priced in `prices` (the list price is the standard
plan; premium and enterprise are organization prices). `billing close-period --period <previous
month>` adds each plan's SUBSCRIPTION line, finalizes the drafts (OPEN) and enqueues their sync
(SYNCED once the worker has pushed them to the mock). Months before it carry their plan as a
line written by hand, as billed before the subscriptions table existed.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TextIO

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from demo import metered, prices
from models import organizations, tables
from models import prices as price_book
from models.db import transaction
from models.invoices import lifecycle
from models.invoices.lifecycle import LineInput
from models.tables import LineItemKind, TokenScope
from models.usage import ingest

MONTHS = 14  # the current (draft) month and the 13 before it
TOKEN_LABEL = "demo"
DEMO_SLUGS = ("acme", "nimbus-labs", "tiny-ci", "pixel-foundry", "eu-analytics", "bigcorp")


@dataclass(frozen=True)
class App:
    name: str
    regions: tuple[str, ...]
    cpu_kind: str  # "shared" or "performance"
    cpus: int
    memory_gb: Decimal
    machines: int  # per region
    volume_gb: int = 0  # per machine
    ipv4: bool = False
    first_month: int = 0  # index into the 14 months: apps appear over time


@dataclass(frozen=True)
class Profile:
    slug: str
    name: str
    currency: str
    apps: tuple[App, ...]
    hostnames: int = 0
    wildcard: bool = False
    snapshot_gb: int = 0
    support: str | None = None
    postgres: tuple[str, ...] = ()
    reserved_vcpus: int = 0  # performance vCPUs in a reserved block (a monthly credit line)
    credits: dict[int, tuple[str, int]] = field(default_factory=dict)  # month -> (why, cents)


def _app(
    name: str,
    regions: str,
    kind: str,
    cpus: int,
    mem: str,
    machines: int,
    *,
    volume_gb: int = 0,
    ipv4: bool = False,
    first_month: int = 0,
) -> App:
    return App(
        name,
        tuple(regions.split()),
        kind,
        cpus,
        Decimal(mem),
        machines,
        volume_gb,
        ipv4,
        first_month,
    )


def _bigcorp_apps(rng: random.Random) -> tuple[App, ...]:
    """Dozens of apps across many regions: 300-400 lines a month, past the 250-line mark where
    Stripe sync and line pagination get interesting."""
    names = [
        "api",
        "gateway",
        "auth",
        "billing",
        "search",
        "ingest",
        "events",
        "notifications",
        "media",
        "thumbnails",
        "checkout",
        "catalog",
        "inventory",
        "pricing",
        "recommendations",
        "reviews",
        "cart",
        "orders",
        "shipping",
        "payments",
        "fraud",
        "ledger",
        "reports",
        "exports",
        "webhooks",
        "admin",
        "docs",
        "status",
        "metrics",
        "logs",
        "queue",
        "scheduler",
        "cache",
    ]
    apps = []
    for i, name in enumerate(names):
        kind = "performance" if i % 5 == 0 else "shared"
        apps.append(
            App(
                name=f"bigcorp-{name}",
                regions=tuple(rng.sample(prices.REGIONS, rng.randint(3, 6))),
                cpu_kind=kind,
                cpus=rng.choice((1, 2, 4)) if kind == "shared" else rng.choice((2, 4, 8)),
                memory_gb=Decimal(rng.choice(("0.5", "1", "2", "4", "8"))),
                machines=rng.randint(1, 4),
                volume_gb=rng.choice((0, 0, 10, 40, 100)),
                ipv4=i % 4 == 0,
                first_month=0 if i < 24 else rng.randint(1, 8),
            )
        )
    return tuple(apps)


def _profiles(rng: random.Random) -> list[Profile]:
    return [
        Profile(
            "acme",
            "Acme Corp",
            "USD",
            (
                _app("acme-web", "iad ord lhr", "shared", 2, "1", 2, ipv4=True),
                _app("acme-api", "iad ord", "shared", 2, "2", 2),
                _app("acme-db", "iad", "performance", 2, "4", 1, volume_gb=50),
                _app("acme-worker", "iad", "shared", 1, "0.5", 2),
                _app("acme-cron", "iad", "shared", 1, "0.25", 1, first_month=4),
            ),
            hostnames=15,
            snapshot_gb=25,
            support="standard",
            postgres=("basic",),
        ),
        Profile(
            "nimbus-labs",
            "Nimbus Labs",
            "USD",
            (
                _app("nimbus-inference", "sjc sea", "performance", 4, "16", 2, volume_gb=20),
                _app("nimbus-embed", "sjc nrt", "performance", 2, "8", 1),
                _app("nimbus-web", "sjc sea nrt syd sin", "shared", 1, "0.5", 1, ipv4=True),
                _app("nimbus-api", "sjc sin", "shared", 2, "1", 2),
                _app("nimbus-queue", "sjc", "shared", 1, "1", 1),
                _app("nimbus-docs", "sjc", "shared", 1, "0.25", 1),
                _app("nimbus-admin", "sea", "shared", 1, "0.5", 1, first_month=6),
                _app("nimbus-evals", "sjc", "performance", 8, "32", 1, first_month=9),
            ),
            hostnames=8,
            support="premium",
            postgres=("launch",),
        ),
        Profile(
            "tiny-ci",
            "Tiny CI",
            "USD",
            (_app("tiny-ci-runner", "ord", "shared", 1, "0.25", 1),),
            hostnames=1,
            credits={
                3: ("Service credit: ord incident", 100),
                8: ("Service credit: ord incident", 50),
            },
        ),
        Profile(
            "pixel-foundry",
            "Pixel Foundry",
            "USD",
            (
                _app("pixel-render", "cdg ams", "performance", 4, "8", 2, volume_gb=100),
                _app("pixel-web", "cdg ams gru jnb", "shared", 1, "0.5", 1, ipv4=True),
                _app("pixel-assets", "cdg", "shared", 1, "1", 1, volume_gb=200),
                _app("pixel-api", "cdg bom", "shared", 2, "1", 1, first_month=5),
            ),
            hostnames=4,
            snapshot_gb=60,
            credits={m: ("Startup program credit", 5_000) for m in range(6)},
        ),
        Profile(
            "eu-analytics",
            "EU Analytics GmbH",
            "EUR",
            (
                _app("eua-collector", "fra ams cdg lhr", "shared", 2, "1", 2),
                _app("eua-warehouse", "fra", "performance", 4, "16", 1, volume_gb=500),
                _app("eua-dashboard", "fra ams", "shared", 1, "0.5", 1, ipv4=True),
                _app("eua-etl", "fra", "shared", 2, "2", 1),
                _app("eua-api", "fra ams", "shared", 1, "1", 2),
                _app("eua-alerts", "fra", "shared", 1, "0.25", 1, first_month=7),
            ),
            hostnames=12,
            snapshot_gb=120,
            support="standard",
            postgres=("launch",),
        ),
        Profile(
            "bigcorp",
            "BigCorp International",
            "USD",
            _bigcorp_apps(rng),
            hostnames=60,
            wildcard=True,
            snapshot_gb=900,
            support="enterprise",
            postgres=("scale", "scale", "performance"),
            reserved_vcpus=16,
        ),
    ]


def _usage_lines(
    rng: random.Random, p: Profile, index: int, start: date, end: date, fraction: Decimal
) -> list[LineInput]:
    """One month of usage for one organization. `fraction` < 1 for the month in progress."""
    period_seconds = Decimal((end - start).days * 86_400) * fraction
    period_hours = Decimal((end - start).days * 24) * fraction
    ps, pe = start, end

    def line(
        kind: LineItemKind,
        desc: str,
        product: str,
        unit: str,
        qty: Decimal,
        price: Decimal,
        *,
        app: str | None = None,
        region: str | None = None,
    ) -> LineInput:
        return LineInput(
            kind, desc, product, unit, qty, price, app, region, period_start=ps, period_end=pe
        )

    lines: list[LineInput] = []
    regions_used: set[str] = set()
    for app in p.apps:
        if index < app.first_month:
            continue
        for region in app.regions:
            regions_used.add(region)
            # Machines autostop when idle, so run time is a share of the month.
            busy = Decimal(rng.randint(55, 100)) / 100
            seconds = (period_seconds * app.machines * busy).to_integral_value()
            size = f"{app.cpu_kind}-cpu-{app.cpus}x"
            lines.append(
                line(
                    LineItemKind.USAGE,
                    f"{app.name}: {app.machines} x {size} in {region}",
                    f"machines-{app.cpu_kind}-cpu",
                    "vCPU-second",
                    seconds * app.cpus,
                    prices.CPU_SECOND[app.cpu_kind],
                    app=app.name,
                    region=region,
                )
            )
            lines.append(
                line(
                    LineItemKind.USAGE,
                    f"{app.name}: {app.memory_gb} GB memory x {app.machines} in {region}",
                    "machines-memory",
                    "GB-second",
                    seconds * app.memory_gb,
                    prices.MEMORY_GB_SECOND,
                    app=app.name,
                    region=region,
                )
            )
            if app.volume_gb:
                # Volumes are prorated hourly: GB-months with a fractional part.
                gb_months = (
                    app.volume_gb * app.machines * period_hours / prices.HOURS_PER_MONTH
                ).quantize(Decimal("1e-9"))
                lines.append(
                    line(
                        LineItemKind.USAGE,
                        f"{app.name}: {app.volume_gb} GB volume x {app.machines} in {region}",
                        "volume-storage",
                        "GB-month",
                        gb_months,
                        prices.VOLUME_GB_MONTH,
                        app=app.name,
                        region=region,
                    )
                )
        if app.ipv4:
            lines.append(
                line(
                    LineItemKind.SUBSCRIPTION,
                    f"{app.name}: dedicated IPv4",
                    "ipv4",
                    "month",
                    Decimal(1),
                    prices.DEDICATED_IPV4_MONTH,
                    app=app.name,
                )
            )
    for region in sorted(regions_used):
        group = prices.REGION_GROUP[region]
        gb = (Decimal(rng.randint(500, 400_000)) / 1000 * fraction * len(p.apps)).quantize(
            Decimal("0.001")
        )
        lines.append(
            line(
                LineItemKind.USAGE,
                f"Egress from {region} ({group})",
                "egress",
                "GB",
                gb,
                prices.EGRESS_GB[group],
                region=region,
            )
        )
    if p.hostnames > prices.SSL_FREE_HOSTNAMES:
        billed = p.hostnames - prices.SSL_FREE_HOSTNAMES
        lines.append(
            line(
                LineItemKind.USAGE,
                f"SSL certificates: {p.hostnames} hostnames, first {prices.SSL_FREE_HOSTNAMES} free",
                "ssl-certificate",
                "hostname-month",
                Decimal(billed),
                prices.SSL_CERT_MONTH,
            )
        )
    if p.wildcard:
        lines.append(
            line(
                LineItemKind.SUBSCRIPTION,
                "SSL certificate: wildcard",
                "ssl-certificate",
                "month",
                Decimal(1),
                prices.SSL_WILDCARD_MONTH,
            )
        )
    if p.snapshot_gb > prices.SNAPSHOT_FREE_GB:
        billed_gb = Decimal(p.snapshot_gb - prices.SNAPSHOT_FREE_GB)
        lines.append(
            line(
                LineItemKind.USAGE,
                f"Volume snapshots: {p.snapshot_gb} GB, first {prices.SNAPSHOT_FREE_GB} GB free",
                "volume-snapshots",
                "GB-month",
                billed_gb,
                prices.SNAPSHOT_GB_MONTH,
            )
        )
    for tier in p.postgres:
        lines.append(
            line(
                LineItemKind.SUBSCRIPTION,
                f"Managed Postgres ({tier})",
                "managed-postgres",
                "month",
                Decimal(1),
                prices.MANAGED_POSTGRES_MONTH[tier],
            )
        )
    if p.support:
        lines.append(
            line(
                LineItemKind.SUBSCRIPTION,
                f"Support plan ({p.support})",
                SUPPORT_PRODUCT,
                "month",
                Decimal(1),
                prices.SUPPORT_PLANS[p.support],
            )
        )
    if p.reserved_vcpus:
        # The block was paid yearly; each month carries its 40% discount as a credit line.
        discount = (
            p.reserved_vcpus
            * prices.PERFORMANCE_VCPU_SECOND
            * prices.SECONDS_PER_MONTH
            * prices.RESERVED_DISCOUNT
        )
        lines.append(
            line(
                LineItemKind.CREDIT,
                f"Reserved compute block: {p.reserved_vcpus} performance vCPUs, 40% off",
                "reserved-compute",
                "month",
                Decimal(1),
                -discount.quantize(Decimal("1e-12")),
            )
        )
    if index in p.credits:
        why, cents = p.credits[index]
        lines.append(
            line(LineItemKind.CREDIT, why, "credit", "credit", Decimal(1), Decimal(-cents))
        )
    return lines


SUPPORT_PRODUCT = "support-plan"
LIST_PLAN = "standard"  # the support plan at list price; the others are organization prices


def _seed_support_plans(
    s: Session,
    profiles: list[Profile],
    orgs: list[tables.Organization],
    *,
    since: date,
    effective_from: datetime,
) -> None:
    """A support-plan subscription for every profile with a plan, from `since`, and its prices:
    the list price per currency, and an organization price for the other tiers."""
    for currency in sorted({p.currency for p in profiles}):
        price_book.set_price(
            s,
            product=SUPPORT_PRODUCT,
            unit="month",
            currency=currency,
            unit_price=prices.SUPPORT_PLANS[LIST_PLAN],
            effective_from=effective_from,
            now=effective_from,
            display_name="Support plan",
        )
    for p, org in zip(profiles, orgs, strict=True):
        if not p.support:
            continue
        assert org.id is not None
        if p.support != LIST_PLAN:
            price_book.set_price(
                s,
                product=SUPPORT_PRODUCT,
                unit="month",
                currency=p.currency,
                unit_price=prices.SUPPORT_PLANS[p.support],
                effective_from=effective_from,
                organization_id=org.id,
                now=effective_from,
            )
        s.add(
            tables.Subscription(
                organization_id=org.id,
                product=SUPPORT_PRODUCT,
                description=f"Support plan ({p.support})",
                quantity=Decimal(1),
                since=since,
            )
        )
    s.flush()


def _month_starts(now: datetime) -> list[date]:
    first = date(now.year, now.month, 1)
    out = []
    for back in range(MONTHS - 1, -1, -1):
        y, m = divmod(first.year * 12 + first.month - 1 - back, 12)
        out.append(date(y, m + 1, 1))
    return out


def _next_month(d: date) -> date:
    return date(d.year + d.month // 12, d.month % 12 + 1, 1)


def _at(d: date, hours: float = 0) -> datetime:
    return datetime(d.year, d.month, d.day, tzinfo=UTC) + timedelta(hours=hours)


def is_seeded(factory: sessionmaker[Session]) -> bool:
    """Whether the demo organizations exist (the seed writes them all in one transaction)."""
    with factory() as s:
        slug = tables.Organization.slug
        return (
            s.exec(select(tables.Organization.id).where(slug == DEMO_SLUGS[0])).first() is not None
        )


def run(
    factory: sessionmaker[Session],
    *,
    now: datetime,
    shards: int,
    out: TextIO,
    tokens_file: Path | None = None,
) -> dict[str, str]:
    """Load the demo data unless it is there, and print the demo tokens; returns {"admin":
    token, slug: member token, ...}. With `tokens_file`, tokens stored there that still work
    are reused and the file is rewritten; without it, every run mints new ones."""
    if is_seeded(factory):
        with transaction(factory) as s:
            if s.exec(select(tables.Price.id)).first() is None:  # seeded before prices existed
                currencies = {
                    o.default_currency.strip() for o in s.exec(select(tables.Organization))
                }
                metered.seed_prices(s, currencies=currencies, effective_from=now)
            demo = col(tables.Organization.slug).in_(DEMO_SLUGS)
            stmt = select(tables.Organization).where(demo).order_by(col(tables.Organization.id))
            kept = _live_stored_tokens(s, tokens_file, now=now)
            tokens = _tokens(s, list(s.exec(stmt)), keep=kept, now=now)
        _store_tokens(tokens_file, tokens)
        reused = sum(1 for k, t in tokens.items() if kept.get(k) == t)
        _print(out, tokens, f"Demo data already loaded; {reused} of {len(tokens)} tokens reused:")
        return tokens
    rng = random.Random(42)  # deterministic: the same invoices on every machine
    profiles = _profiles(rng)
    months = _month_starts(now)
    count = 0
    plans_since = months[-2]  # the previous month, the first one the close bills plans for
    with transaction(factory) as s:
        orgs = [
            organizations.create(
                s,
                slug=p.slug,
                name=p.name,
                billing_email=f"billing@{p.slug}.example",
                default_currency=p.currency,
            )
            for p in profiles
        ]
        metered.seed_prices(
            s, currencies={p.currency for p in profiles}, effective_from=_at(months[0])
        )
        _seed_support_plans(s, profiles, orgs, since=plans_since, effective_from=_at(months[0]))
        for index, start in enumerate(months):
            end = _next_month(start)
            # The current month, and the previous one still waiting for its close.
            current = index >= len(months) - 2
            for p, org in zip(profiles, orgs, strict=True):
                count += _seed_month(
                    s,
                    rng,
                    p,
                    org,
                    index,
                    start,
                    end,
                    now=now,
                    current=current,
                    shards=shards,
                    months=len(months),
                )
        _demo_failed_sync(s, orgs, now=now)
        tokens = _tokens(s, orgs, keep={}, now=now)
    _store_tokens(tokens_file, tokens)
    _print(
        out,
        tokens,
        f"Demo data loaded: {len(orgs)} organizations, {count} invoices, {months[0]:%Y-%m} to {months[-1]:%Y-%m}.",
    )
    return tokens


def _seed_month(
    s: Session,
    rng: random.Random,
    p: Profile,
    org: tables.Organization,
    index: int,
    start: date,
    end: date,
    *,
    now: datetime,
    current: bool,
    shards: int,
    months: int,
) -> int:
    """One organization's invoice(s) for one month; returns how many invoices it wrote."""
    if current:
        # Received as it happened: until now in the month in progress, until a minute before
        # its end in the previous month (so each event was inside the ingest window then).
        received = min(now, _at(end) - timedelta(minutes=1))
        span = _at(end) - _at(start)
        fraction = Decimal(max(0, int((received - _at(start)).total_seconds()))) / Decimal(
            int(span.total_seconds())
        )
        fraction = min(Decimal(1), fraction).quantize(Decimal("0.0001"))
        # The drafts go through the ingestion path, as a metering pipeline would have sent
        # them; only the flat monthly lines (add-ons, credits) are added by hand, and the
        # support plan is the close's to add (a subscription).
        lines = [
            x
            for x in _usage_lines(rng, p, index, start, end, fraction)
            if x.product != SUPPORT_PRODUCT
        ]
        metered_lines = [x for x in lines if x.kind == LineItemKind.USAGE]
        events = list(metered.events_for(p.slug, metered_lines, start=start, now=received))
        for i in range(0, len(events), ingest.MAX_EVENTS_PER_CALL):
            batch = events[i : i + ingest.MAX_EVENTS_PER_CALL]
            result = ingest.record_usage(s, batch, now=received)
            assert not result.rejected, result.rejected[:3]
        assert org.id is not None
        mapping = s.get(tables.UsageDraft, (org.id, start))
        if mapping is not None:
            draft = s.get_one(tables.Invoice, mapping.invoice_id, populate_existing=True)
        else:
            draft = lifecycle.create_draft(
                s, org, currency=p.currency, period_start=start, period_end=end, now=now
            )
        flat = [x for x in lines if x.kind != LineItemKind.USAGE]
        if flat:
            _add(s, draft, flat, now=now)
        return 1
    lines = _usage_lines(rng, p, index, start, end, Decimal(1))
    if p.slug == "nimbus-labs" and index == 9:
        # A correction for last month's egress goes on this invoice: finalized ones are immutable.
        lines.append(
            LineInput(
                LineItemKind.ADJUSTMENT,
                "Adjustment: sin egress metered twice last month",
                "egress",
                "GB",
                Decimal("1250.5"),
                Decimal(-4),
                region="sin",
            )
        )
    finalized_at = min(now, _at(end, hours=2))
    written = 1
    inv = _finalized(
        s, org, p.currency, start, end, lines, created=_at(end), at=finalized_at, shards=shards
    )
    if p.slug == "acme" and index == 5:
        # Sent with the wrong usage export, voided, and reissued with a new number.
        lifecycle.void(s, inv, now=finalized_at + timedelta(days=1), rollup_shards=shards)
        fixed = _usage_lines(rng, p, index, start, end, Decimal(1))
        inv = _finalized(
            s,
            org,
            p.currency,
            start,
            end,
            fixed,
            created=_at(end, 25),
            at=finalized_at + timedelta(days=1, hours=1),
            shards=shards,
        )
        written += 1
    if p.slug == "nimbus-labs" and index == 7:
        # A one-off billed twice by mistake: the duplicate is voided.
        one_off = [
            LineInput(
                LineItemKind.ONE_OFF,
                "Postgres migration assistance",
                "professional-services",
                "hour",
                Decimal(6),
                Decimal(15_000),
            )
        ]
        first = _finalized(
            s,
            org,
            p.currency,
            start,
            end,
            one_off,
            created=_at(end, 3),
            at=finalized_at + timedelta(hours=2),
            shards=shards,
        )
        dup = _finalized(
            s,
            org,
            p.currency,
            start,
            end,
            one_off,
            created=_at(end, 3),
            at=finalized_at + timedelta(hours=2),
            shards=shards,
        )
        lifecycle.void(s, dup, now=finalized_at + timedelta(days=2), rollup_shards=shards)
        lifecycle.mark_paid(
            s, first, now=finalized_at + timedelta(days=5), paid_on=lifecycle.PaidOn.HERE
        )
        written += 2
    age = months - 1 - index  # 1 = last month
    if p.slug == "pixel-foundry" and index == 10:
        lifecycle.mark_uncollectible(s, inv, now=finalized_at + timedelta(days=45))
    elif age >= 3 or (age == 2 and p.slug != "tiny-ci"):
        # Last month's invoices are still open; tiny-ci is an overdue payer.
        lifecycle.mark_paid(
            s,
            inv,
            now=min(now, finalized_at + timedelta(days=rng.randint(1, 12))),
            paid_on=lifecycle.PaidOn.HERE,
        )
    return written


def _finalized(
    s: Session,
    org: tables.Organization,
    currency: str,
    start: date,
    end: date,
    lines: list[LineInput],
    *,
    created: datetime,
    at: datetime,
    shards: int,
) -> tables.Invoice:
    inv = lifecycle.create_draft(
        s, org, currency=currency, period_start=start, period_end=end, now=created
    )
    _add(s, inv, lines, now=created)
    return lifecycle.finalize(s, inv, now=at, rollup_shards=shards)


def _add(s: Session, inv: tables.Invoice, lines: list[LineInput], *, now: datetime) -> None:
    step = lifecycle.MAX_ITEMS_PER_CALL
    for i in range(0, len(lines), step):
        lifecycle.add_lines(s, inv, lines[i : i + step], now=now)


def _tokens(
    s: Session, orgs: list[tables.Organization], *, keep: dict[str, str], now: datetime
) -> dict[str, str]:
    """The demo tokens: the ones in `keep` (already checked live), new ones for the rest. A
    new token revokes the earlier demo tokens of its name, whose plaintext nobody kept."""
    tokens: dict[str, str] = {}
    for name, org in [("admin", None), *((o.slug, o) for o in orgs)]:
        if name in keep:
            tokens[name] = keep[name]
            continue
        scope = TokenScope.ADMIN if org is None else TokenScope.MEMBER
        _revoke_demo_tokens(s, org, scope, now=now)
        tokens[name], _ = organizations.create_token(
            s, scope=scope, organization=org, name=TOKEN_LABEL
        )
    return tokens


def _revoke_demo_tokens(
    s: Session, org: tables.Organization | None, scope: TokenScope, *, now: datetime
) -> None:
    s.execute(
        sa.text(
            """
            UPDATE api_tokens SET revoked_at = :now
            WHERE name = :label AND scope = :scope AND revoked_at IS NULL
              AND organization_id IS NOT DISTINCT FROM :org
            """
        ),
        {"now": now, "label": TOKEN_LABEL, "scope": scope.value, "org": org.id if org else None},
    )


def _live_stored_tokens(s: Session, path: Path | None, *, now: datetime) -> dict[str, str]:
    """Tokens from the file that still resolve to a live demo token of the right organization;
    a missing or unreadable file, or a reset database, just means new tokens."""
    if path is None or not path.exists():
        return {}
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(stored, dict):
        return {}
    live: dict[str, str] = {}
    for name, token in stored.items():
        if not isinstance(name, str) or not isinstance(token, str):
            continue
        row = organizations.resolve_token(s, token, now=now)
        if row is None or row.name != TOKEN_LABEL:
            continue
        if name == "admin":
            ok = row.scope == TokenScope.ADMIN and row.organization_id is None
        else:
            org = s.exec(
                select(tables.Organization).where(tables.Organization.slug == name)
            ).first()
            ok = org is not None and row.organization_id == org.id
        if ok:
            live[name] = token
    return live


def _store_tokens(path: Path | None, tokens: dict[str, str]) -> None:
    if path is None:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    # Owner-only: these are live credentials, if only for demo data.
    path.touch(mode=0o600, exist_ok=True)
    path.write_text(json.dumps(tokens, indent=2) + "\n", encoding="utf-8")


def live_tokens(factory: sessionmaker[Session], path: Path, *, now: datetime) -> dict[str, str]:
    """The stored demo tokens that still work, admin first (for `billing tokens`)."""
    with factory() as s:
        return _live_stored_tokens(s, path, now=now)


def stored_tokens(path: Path) -> dict[str, str]:
    """The demo tokens `billing run` stored (for `billing tokens`); empty when there are none."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {str(k): str(v) for k, v in stored.items()} if isinstance(stored, dict) else {}


FAILED_SYNC_SLUG = "tiny-ci"


def _demo_failed_sync(s: Session, orgs: list[tables.Organization], *, now: datetime) -> None:
    """Leave tiny-ci's newest finalized invoice as a first push that Stripe refused, exactly as
    the worker records it: the outbox row FAILED with Stripe's error, and the attempt in the
    history. Nothing is wrong with the invoice itself, so Resync (PENDING, attempts reset)
    pushes it to the mock like any other."""
    org = next(o for o in orgs if o.slug == FAILED_SYNC_SLUG)
    inv = s.exec(
        select(tables.Invoice)
        .where(tables.Invoice.organization_id == org.id, tables.Invoice.status != "draft")
        .order_by(col(tables.Invoice.period_start).desc())
    ).first()
    assert inv is not None and inv.id is not None
    row = s.get(tables.InvoiceSync, inv.id)
    assert row is not None
    at = inv.finalized_at or now
    message = "No such customer: 'cus_tinyci_deleted'"
    row.state = tables.SyncStatus.FAILED
    row.attempts = 1
    row.next_attempt_at = None
    row.last_attempt_at = at
    row.last_error_class = "InvalidRequestError"
    row.last_error_code = "resource_missing"
    row.last_error_message = message
    row.last_error_http_status = 400
    row.last_error_request_id = "req_demo_failed_sync"
    s.add(
        tables.SyncAttempt(
            invoice_id=inv.id,
            attempt=1,
            step="create",
            outcome="failed",
            started_at=at,
            duration_ms=84,
            error_class="InvalidRequestError",
            error_code="resource_missing",
            error_message=message,
            http_status=400,
            request_id="req_demo_failed_sync",
            calls=1,
        )
    )
    s.flush()


def _print(out: TextIO, tokens: dict[str, str], headline: str) -> None:
    width = max(len(k) for k in tokens) + 2
    out.write(f"\n{headline}\n")
    out.write("Use a token as `Authorization: Bearer <token>`; admin sees the whole platform.\n")
    for name, token in tokens.items():
        out.write(f"  {name:<{width}}{token}\n")
    out.write("\n")
    out.flush()
