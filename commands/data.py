"""Data commands: migrate, seed, generate, rollup verify|rebuild, usage verify|replay|partitions."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime

import bootstrap
from commands.output import fail


def migrate(args: argparse.Namespace) -> int:
    from migrations_runner import upgrade

    upgrade(bootstrap.database_url(bootstrap.environment()), args.revision)
    print(f"migrated to {args.revision}")
    return 0


def seed(args: argparse.Namespace) -> int:
    from demo import seed

    cfg = bootstrap.environment()
    factory = bootstrap.sessions(cfg, pool_size=2)
    seed.run(factory, now=datetime.now(UTC), shards=cfg.rollup_platform_shards, out=sys.stdout)
    return 0


def generate(args: argparse.Namespace) -> int:
    from demo import generate

    cfg = bootstrap.environment()
    generate.run(
        bootstrap.database_url(cfg),
        orgs=args.orgs,
        months=args.months,
        items=args.items,
        per_month=args.per_month,
        seed=args.seed,
        shards=cfg.rollup_platform_shards,
        out=sys.stdout,
    )
    return 0


def rollup(args: argparse.Namespace) -> int:
    from models import rollup
    from models.db import transaction

    cfg = bootstrap.environment()
    factory = bootstrap.sessions(cfg)
    if args.action == "rebuild":
        with transaction(factory) as s:
            rows = rollup.rebuild(s, shards=cfg.rollup_platform_shards)
        print(f"rebuilt {rows} rollup rows")
        return 0
    with transaction(factory) as s:
        diffs = rollup.verify(s)
    for d in diffs:
        scope = "platform" if d.scope_id == rollup.PLATFORM_SCOPE else f"org {d.scope_id}"
        print(
            f"{scope} {d.month:%Y-%m} {d.currency}: expected (count, subtotal, total, credited) "
            f"{d.expected}, stored {d.stored}"
        )
    print(f"{len(diffs)} differing rows" if diffs else "rollup matches the invoices exactly")
    return 1 if diffs else 0


def usage(args: argparse.Namespace) -> int:
    from models.db import transaction
    from models.errors import DomainError
    from models.usage import ingest, verify

    factory = bootstrap.sessions(bootstrap.environment())
    now = datetime.now(UTC)
    if args.action == "partitions":
        with transaction(factory) as s:
            names = ingest.ensure_partitions(s, now=now, months_ahead=args.months_ahead)
        print("\n".join(names))
        return 0
    if args.action == "replay":
        if not args.org or not args.period:
            return fail("replay needs --org SLUG --period YYYY-MM")
        try:
            period = datetime.strptime(args.period, "%Y-%m").date()
            with transaction(factory) as s:
                done = verify.replay(s, organization_slug=args.org, period_start=period, now=now)
        except (ValueError, DomainError) as e:
            return fail(str(getattr(e, "message", e)))
        print(f"rebuilt {done.lines} usage lines; subtotal now {done.subtotal_cents} (minor units)")
        return 0
    with transaction(factory) as s:
        diffs = verify.verify(s)
    for d in diffs:
        print(
            f"invoice {d.invoice_id} {d.what} {d.key or ''}: expected {d.expected}, stored {d.stored}"
        )
    print(f"{len(diffs)} differences" if diffs else "usage lines match their events exactly")
    return 1 if diffs else 0
