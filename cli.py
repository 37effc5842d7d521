"""`billing`: the composition root. The only module that imports gql, sync and models together.

It parses the settings (`settings.Settings`, the only reader of the environment besides the
embedded-server lookup here), resolves where PostgreSQL and Redis are (the environment, or
embedded servers started on demand), exports them to child processes, builds each process's
engine and Redis client once, and wires the API to the sync through a plain
`enqueue_sync(invoice_id)` callable, so that `gql` never imports Celery.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from settings import Settings, SettingsError

if TYPE_CHECKING:
    import redis
    import sqlalchemy as sa

    from gql.core.limits import Limits
    from sync.config import SyncConfig


def _settings() -> Settings:
    """The environment, parsed once; a bad value ends the command with its variable named."""
    try:
        return Settings.from_env()
    except SettingsError as e:
        print(f"billing: {e}", file=sys.stderr)
        raise SystemExit(2) from e


def _environment() -> Settings:
    """Settings with DATABASE_URL and REDIS_URL filled in (embedded servers when unset), exported
    so that every process started from here talks to the same servers."""
    base = _settings()
    if base.database_url and base.redis_url:
        db_url, redis_url = base.database_url, base.redis_url
    else:  # only then: the embedded servers' module is slow to import (workers start often)
        from devstack.services import resolve_urls

        db_url, redis_url = resolve_urls(base.database_url, base.redis_url, base.local_dir)
    os.environ["DATABASE_URL"] = db_url
    os.environ["REDIS_URL"] = redis_url
    return base.model_copy(update={"database_url": db_url, "redis_url": redis_url})


def _engine(cfg: Settings, *, pool_size: int | None = None) -> sa.Engine:
    from models.db import make_engine

    return make_engine(_database_url(cfg), pool_size=pool_size or cfg.db_pool_size)


def _api_limits(cfg: Settings) -> Limits:
    from gql.core.limits import Limits

    return Limits(
        max_body_bytes=cfg.api_max_body_bytes,
        max_document_bytes=cfg.api_max_document_bytes,
        max_depth=cfg.api_max_depth,
        max_fields=cfg.api_max_fields,
        max_aliases=cfg.api_max_aliases,
        max_tokens=cfg.api_max_tokens,
        max_variables_depth=cfg.api_max_variables_depth,
        parse_cache_entries=cfg.api_parse_cache_entries,
        parse_cache_bytes=cfg.api_parse_cache_bytes,
        db_pool_timeout_seconds=cfg.db_pool_timeout_seconds,
        db_connect_timeout_seconds=cfg.db_connect_timeout_seconds,
        db_statement_timeout_ms=cfg.db_statement_timeout_ms,
        enqueue_timeout_seconds=cfg.api_enqueue_timeout_seconds,
        graphql_threads=cfg.api_graphql_threads,
        graphql_queue=cfg.api_graphql_queue,
        token_cache_seconds=cfg.api_token_cache_seconds,
        subtree_cache_entries=cfg.api_subtree_cache_entries,
        subtree_cache_bytes=cfg.api_subtree_cache_bytes,
        subtree_cache_max_variables_bytes=cfg.api_subtree_cache_max_variables_bytes,
    )


def _api_engine(cfg: Settings, limits: Limits) -> sa.Engine:
    """The API's engine gives up on a pool checkout, a connect and a statement, so a database
    that never answers costs a request seconds (503), not a worker forever. Workers and
    commands keep `_engine`: a month-end close may legitimately run longer statements."""
    from models.db import make_engine

    return make_engine(
        _database_url(cfg),
        pool_size=cfg.db_pool_size,
        pool_timeout=limits.db_pool_timeout_seconds,
        connect_timeout=limits.db_connect_timeout_seconds,
        statement_timeout_ms=limits.db_statement_timeout_ms,
    )


def _redis(cfg: Settings) -> redis.Redis:
    import redis

    assert cfg.redis_url is not None
    # Short timeouts: the API's /readyz and /metrics must answer even when Redis hangs.
    return redis.Redis.from_url(cfg.redis_url, socket_timeout=1, socket_connect_timeout=1)


def _sync_config(cfg: Settings) -> SyncConfig:
    """The sync's view of the settings, and the Celery app configured with it."""
    from sync import celery_app
    from sync.config import SyncConfig

    sync_cfg = SyncConfig.from_settings(cfg)
    celery_app.configure(sync_cfg)
    return sync_cfg


def _database_url(cfg: Settings) -> str:
    assert cfg.database_url is not None
    return cfg.database_url


def cmd_migrate(args: argparse.Namespace) -> int:
    from migrations_runner import upgrade

    cfg = _environment()
    upgrade(_database_url(cfg), args.revision)
    print(f"migrated to {args.revision}")
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    cfg = _environment()
    print(f"export DATABASE_URL='{cfg.database_url}'")
    print(f"export REDIS_URL='{cfg.redis_url}'")
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    from devstack.services import stop_embedded

    stop_embedded(_settings().local_dir)
    print("embedded servers stopped")
    return 0


def cmd_seed(args: argparse.Namespace) -> int:
    from demo import seed
    from models.db import session_factory

    cfg = _environment()
    factory = session_factory(_engine(cfg, pool_size=2))
    seed.run(factory, now=datetime.now(UTC), shards=cfg.rollup_platform_shards, out=sys.stdout)
    return 0


def cmd_token_create(args: argparse.Namespace) -> int:
    from models import organizations
    from models.db import session_factory, transaction
    from models.errors import DomainError
    from models.tables import TokenScope

    cfg = _environment()
    factory = session_factory(_engine(cfg, pool_size=1))
    try:
        with transaction(factory) as s:
            org = organizations.by_slug(s, args.org) if args.org else None
            scope = TokenScope.ADMIN if args.admin else TokenScope.MEMBER
            plaintext, _ = organizations.create_token(
                s, scope=scope, organization=org, name=args.name or f"cli {scope.value}"
            )
    except DomainError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    print(plaintext)
    return 0


def cmd_tokens(args: argparse.Namespace) -> int:
    """The demo tokens `billing run` keeps in .local/demo-tokens.json, with the banner's links;
    only those that still work (a reset database leaves none)."""
    from demo import seed
    from devstack.supervisor import banner, tokens_file
    from models.db import make_engine, session_factory

    cfg = _environment()
    engine = make_engine(_database_url(cfg), pool_size=1)
    tokens = seed.live_tokens(session_factory(engine), tokens_file(cfg), now=datetime.now(UTC))
    engine.dispose()
    if not tokens:
        print("no demo tokens yet: `billing run` (or `make run`) makes them", file=sys.stderr)
        return 1
    banner(sys.stdout, host=args.host, port=args.port, tokens=tokens, running=False)
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    from demo import generate

    cfg = _environment()
    generate.run(
        _database_url(cfg),
        orgs=args.orgs,
        months=args.months,
        items=args.items,
        per_month=args.per_month,
        seed=args.seed,
        shards=cfg.rollup_platform_shards,
        out=sys.stdout,
    )
    return 0


def cmd_rollup(args: argparse.Namespace) -> int:
    from models import rollup
    from models.db import session_factory, transaction

    cfg = _environment()
    factory = session_factory(_engine(cfg, pool_size=1))
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
            f"{scope} {d.month:%Y-%m} {d.currency}: expected (count, subtotal, total) "
            f"{d.expected}, stored {d.stored}"
        )
    print(f"{len(diffs)} differing rows" if diffs else "rollup matches the invoices exactly")
    return 1 if diffs else 0


def cmd_usage(args: argparse.Namespace) -> int:
    from models.db import session_factory, transaction
    from models.errors import DomainError
    from models.usage import ingest, verify

    cfg = _environment()
    factory = session_factory(_engine(cfg, pool_size=1))
    now = datetime.now(UTC)
    if args.action == "partitions":
        with transaction(factory) as s:
            names = ingest.ensure_partitions(s, now=now, months_ahead=args.months_ahead)
        print("\n".join(names))
        return 0
    if args.action == "replay":
        if not args.org or not args.period:
            print("error: replay needs --org SLUG --period YYYY-MM", file=sys.stderr)
            return 2
        try:
            period = datetime.strptime(args.period, "%Y-%m").date()
            with transaction(factory) as s:
                done = verify.replay(s, organization_slug=args.org, period_start=period, now=now)
        except (ValueError, DomainError) as e:
            print(f"error: {getattr(e, 'message', e)}", file=sys.stderr)
            return 2
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


def cmd_org_create(args: argparse.Namespace) -> int:
    from models import organizations
    from models.db import session_factory, transaction
    from models.errors import DomainError

    cfg = _environment()
    factory = session_factory(_engine(cfg, pool_size=1))
    try:
        with transaction(factory) as s:
            org = organizations.create(
                s,
                slug=args.slug,
                name=args.name,
                billing_email=args.email,
                default_currency=args.currency,
            )
    except DomainError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    print(
        f"created {org.slug} ({org.public_id}), invoices {org.invoice_prefix}-NNNN in {org.default_currency}"
    )
    return 0


def cmd_feed(args: argparse.Namespace) -> int:
    from demo import feed

    return feed.run(
        url=args.url, token=args.token, every=args.every, events=args.events, seed=args.seed
    )


def cmd_close_period(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from tqdm import tqdm

    from models.close import cycle, driver
    from models.close.cycle import Outcome
    from models.db import session_factory
    from models.errors import DomainError
    from sync import sweeper
    from sync.celery_app import enqueue_sync, queue_name

    cfg = _environment()
    try:
        period = (
            cycle.parse_period(args.period)
            if args.period
            else cycle.due_period(
                datetime.now(UTC), grace=timedelta(seconds=cfg.close_grace_seconds)
            )
        )
    except DomainError as e:
        print(f"error: {e.message}", file=sys.stderr)
        return 2
    factory = session_factory(_engine(cfg, pool_size=3))
    bar = tqdm(desc=f"close {period:%Y-%m}", unit="inv", disable=args.quiet)
    # NOTE: without this, enqueue_sync published to Celery's default (unconfigured) broker and
    # failed silently: every sync of a CLI close waited for the sweeper.
    sync_cfg = _sync_config(cfg)
    broker = _redis(cfg)
    nudge = sweeper.capped_enqueue(
        enqueue_sync,
        lambda: sweeper.queue_depth(broker, queue_name()),
        max_depth=sync_cfg.max_queue_depth,
    )

    def tick(p: driver.Progress, invoice_id: int, outcome: Outcome) -> None:
        if bar.total is None:
            bar.total = p.todo
        bar.set_postfix(failed=p.counts[Outcome.FAILED], skipped=p.counts[Outcome.SKIPPED])
        bar.update(1)

    done = driver.run(
        factory,
        period,
        clock=lambda: datetime.now(UTC),
        rollup_shards=cfg.rollup_platform_shards,
        enqueue_sync=nudge,
        on_invoice=tick,
    )
    bar.close()
    counts = ", ".join(f"{n} {o.value}" for o, n in done.counts.items() if n)
    state = "finished" if done.finished else "not finished (another closer holds drafts)"
    print(f"close {period:%Y-%m}: {counts or 'nothing to do'}; {state}")
    if done.last_error:
        print(f"last error: {done.last_error}", file=sys.stderr)
    return 1 if done.counts[Outcome.FAILED] else 0


def asgi_app() -> Any:
    """uvicorn factory (`cli:asgi_app`): each worker process builds its own settings (from the
    environment `serve` exported), engine, Redis client and app; the app's lifespan disposes
    the engine and client."""
    from gql import logs
    from gql.app import create_app
    from sync import health
    from sync.celery_app import enqueue_sync

    logs.configure()
    cfg = _settings()
    sync_cfg = _sync_config(cfg)
    limits = _api_limits(cfg)
    engine, client = _api_engine(cfg, limits), _redis(cfg)
    app = create_app(
        cfg,
        engine=engine,
        limits=limits,
        redis=client,
        enqueue_sync=enqueue_sync,
        readiness=[health.readiness_check(client, sync_cfg)],
        metrics_collectors=[health.SyncCollector(engine, client, sync_cfg)],
    )
    add_webhooks(app, cfg)
    return app


def add_webhooks(app: Any, cfg: Settings) -> None:
    """`POST /webhooks/stripe` on the API (sync.webhooks verifies, models.payments.collection applies),
    wired here so that gql imports neither sync nor the Stripe SDK."""
    from models.db import session_factory
    from sync import webhooks

    secrets = webhooks.parse_secrets(cfg.stripe_webhook_secrets.get_secret_value())
    app.router.routes.append(webhooks.route(session_factory(app.state.engine), secrets))


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    _environment()
    uvicorn.run(
        "cli:asgi_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from sync.celery_app import run_worker

    # Each worker process builds its own engine and Redis client after Celery's fork, from
    # this config (a connection must never be shared across the fork).
    _sync_config(_environment())
    run_worker(concurrency=args.concurrency, hostname=args.hostname, loglevel=args.loglevel)
    return 0


def cmd_beat(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sync.celery_app import run_beat

    cfg = _environment()
    sync_cfg = _sync_config(cfg)
    schedule = Path(args.schedule) if args.schedule else None
    run_beat(schedule or cfg.local_dir / f"celerybeat-{sync_cfg.queue}", loglevel=args.loglevel)
    return 0


def cmd_mock_stripe(args: argparse.Namespace) -> int:
    from stripe_mock import serve, settings_from_json

    options = settings_from_json(args.faults) if args.faults else {}
    options.setdefault("idempotency_ttl_seconds", args.idempotency_ttl)
    cfg = _settings()
    # Kept under .local/ so that a restarted `make run` still finds its customers and invoices.
    state = args.state or str(cfg.local_dir / "mock-stripe" / "state.jsonl")
    options.setdefault("webhook_url", args.webhook_url)
    options.setdefault(
        "webhook_secrets",
        [s for s in cfg.stripe_webhook_secrets.get_secret_value().split(",") if s][:1],
    )
    serve(args.host, args.port, state_path=None if state == "none" else state, **options)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    from devstack.services import embedded_running
    from devstack.supervisor import run_stack

    given = _settings()
    # Stop the embedded servers on exit only if this run started them: a second terminal (the
    # tests, a benchmark) may be using servers that were already up.
    started_here = not (given.database_url and given.redis_url) and not embedded_running(
        given.local_dir
    )
    cfg = _environment()
    return run_stack(cfg, host=args.host, port=args.port, embedded=started_here)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="billing", description="Billing backend: API, sync, data.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="migrate, seed if empty, and run the whole stack")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_run)

    s = sub.add_parser("migrate", help="apply the database migrations")
    s.add_argument("revision", nargs="?", default="head")
    s.set_defaults(func=cmd_migrate)

    s = sub.add_parser("seed", help="load demo organizations, invoices and tokens (once)")
    s.set_defaults(func=cmd_seed)

    s = sub.add_parser("token", help="API tokens")
    tsub = s.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="print a new token alone on stdout")
    t.add_argument("--org", help="organization slug (member token)")
    t.add_argument("--admin", action="store_true", help="a platform admin token")
    t.add_argument("--name", help="a label for the token")
    t.set_defaults(func=cmd_token_create)

    s = sub.add_parser("tokens", help="print the demo tokens and links `billing run` printed")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.set_defaults(func=cmd_tokens)

    s = sub.add_parser("generate", help="bulk-load synthetic finalized invoices with COPY")
    s.add_argument("--orgs", type=int, default=1000)
    s.add_argument("--months", type=int, default=36)
    s.add_argument("--items", type=int, default=0, help="line items per invoice")
    s.add_argument("--per-month", type=int, default=50_000, help="invoices per month")
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=cmd_generate)

    s = sub.add_parser("rollup", help="check or repair the monthly rollup")
    s.add_argument("action", choices=["verify", "rebuild"])
    s.set_defaults(func=cmd_rollup)

    s = sub.add_parser("usage", help="usage lines: verify, replay, create partitions")
    s.add_argument("action", choices=["verify", "replay", "partitions"])
    s.add_argument("--org", help="organization slug (replay)")
    s.add_argument("--period", help="YYYY-MM (replay)")
    s.add_argument("--months-ahead", type=int, default=2, help="partitions to create ahead")
    s.set_defaults(func=cmd_usage)

    s = sub.add_parser("org", help="organizations")
    osub = s.add_subparsers(dest="org_command", required=True)
    o = osub.add_parser("create", help="create an organization to bill")
    o.add_argument("--slug", required=True)
    o.add_argument("--name", required=True)
    o.add_argument("--email", required=True, help="billing e-mail")
    o.add_argument("--currency", default="USD")
    o.set_defaults(func=cmd_org_create)

    s = sub.add_parser("feed", help="a simulated metering feed posting to /v1/usage (demo)")
    s.add_argument("--url", default="http://127.0.0.1:8000/v1/usage")
    s.add_argument("--token", required=True, help="a metering or admin token")
    s.add_argument("--every", type=float, default=3.0, help="seconds between batches")
    s.add_argument("--events", type=int, default=200, help="events per batch")
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(func=cmd_feed)

    s = sub.add_parser("close-period", help="the month-end close: finalize a period's drafts")
    s.add_argument("--period", help="YYYY-MM (default: the last period past its grace)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_close_period)

    s = sub.add_parser("serve", help="the GraphQL API (uvicorn)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=cmd_serve)

    s = sub.add_parser("worker", help="a Celery worker for the Stripe sync")
    s.add_argument("--concurrency", type=int, default=4)
    s.add_argument("--hostname", default=None)
    s.add_argument("--loglevel", default="INFO")
    s.set_defaults(func=cmd_worker)

    s = sub.add_parser("beat", help="Celery beat: the sync sweeper and reconciler schedule")
    s.add_argument("--schedule", help="beat's schedule file (default: under BILLING_LOCAL_DIR)")
    s.add_argument("--loglevel", default="INFO")
    s.set_defaults(func=cmd_beat)

    s = sub.add_parser("mock-stripe", help="the mock Stripe HTTP server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=12111)
    s.add_argument(
        "--faults",
        help='start-up faults as the JSON body of POST /_mock/faults, e.g. \'{"rules": [...], "seed": 1}\'',
    )
    s.add_argument("--idempotency-ttl", type=float, default=86400.0)
    s.add_argument("--state", help="journal file that keeps objects across restarts ('none')")
    s.add_argument(
        "--webhook-url",
        default="http://127.0.0.1:8000/webhooks/stripe",
        help="where events are posted, signed with STRIPE_WEBHOOK_SECRETS' first secret",
    )
    s.set_defaults(func=cmd_mock_stripe)

    s = sub.add_parser("env", help="print DATABASE_URL and REDIS_URL (starting embedded servers)")
    s.set_defaults(func=cmd_env)

    s = sub.add_parser("stop", help="stop the embedded PostgreSQL and Redis")
    s.set_defaults(func=cmd_stop)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
