"""The processes: run (the whole dev stack), serve, worker, beat, mock-stripe, feed; and env,
stop, tokens for the embedded servers and the demo."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path

import bootstrap


def run(args: argparse.Namespace) -> int:
    from devstack.services import embedded_running
    from devstack.supervisor import PortTaken, check_ports, run_stack

    given = bootstrap.settings()
    if args.port is not None:
        given = given.model_copy(update={"api_port": args.port})
    try:
        # Before anything starts: a taken port is the one thing to fix, said once.
        check_ports(given, host=args.host)
    except PortTaken as e:
        print(f"billing run: {e}", file=sys.stderr)
        return 1
    # Stop the embedded servers on exit only if this run started them: a second terminal (the
    # tests, a benchmark) may be using servers that were already up.
    started_here = not (given.database_url and given.redis_url) and not embedded_running(
        given.local_dir
    )
    cfg = bootstrap.environment().model_copy(update={"api_port": given.api_port})
    return run_stack(cfg, host=args.host, port=cfg.api_port, embedded=started_here)


def serve(args: argparse.Namespace) -> int:
    import uvicorn

    cfg = bootstrap.environment()
    uvicorn.run(
        "bootstrap:asgi_app",
        factory=True,
        host=args.host,
        port=cfg.api_port if args.port is None else args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
    )
    return 0


def worker(args: argparse.Namespace) -> int:
    from sync.celery_app import run_worker

    # Each worker process builds its own engine and Redis client after Celery's fork, from
    # this config (a connection must never be shared across the fork).
    bootstrap.sync_config(bootstrap.environment())
    run_worker(concurrency=args.concurrency, hostname=args.hostname, loglevel=args.loglevel)
    return 0


def beat(args: argparse.Namespace) -> int:
    from sync.celery_app import run_beat

    cfg = bootstrap.environment()
    sync_cfg = bootstrap.sync_config(cfg)
    schedule = Path(args.schedule) if args.schedule else None
    run_beat(schedule or cfg.local_dir / f"celerybeat-{sync_cfg.queue}", loglevel=args.loglevel)
    return 0


def mock_stripe(args: argparse.Namespace) -> int:
    from stripe_mock import serve, settings_from_json
    from sync.webhooks import parse_secrets

    options = settings_from_json(args.faults) if args.faults else {}
    options.setdefault("idempotency_ttl_seconds", args.idempotency_ttl)
    cfg = bootstrap.settings()
    # Kept under .local/ so that a restarted `make run` still finds its customers and invoices.
    state = args.state or str(cfg.local_dir / "mock-stripe" / "state.jsonl")
    # No default address: a guess (the API on :8000) reached whichever stack held that port.
    options.setdefault("webhook_url", args.webhook_url)
    secrets = parse_secrets(cfg.stripe_webhook_secrets.get_secret_value())
    options.setdefault("webhook_secrets", secrets[:1])
    port = cfg.mock_port if args.port is None else args.port
    serve(args.host, port, state_path=None if state == "none" else state, **options)
    return 0


def feed(args: argparse.Namespace) -> int:
    from demo import feed

    url = args.url or f"http://127.0.0.1:{bootstrap.settings().api_port}/v1/usage"
    return feed.run(url=url, token=args.token, every=args.every, events=args.events, seed=args.seed)


def env(args: argparse.Namespace) -> int:
    cfg = bootstrap.environment()
    print(f"export DATABASE_URL='{cfg.database_url}'")
    print(f"export REDIS_URL='{cfg.redis_url}'")
    return 0


def stop(args: argparse.Namespace) -> int:
    from devstack.services import stop_embedded
    from devstack.supervisor import stop_stack

    local_dir = bootstrap.settings().local_dir
    print(stop_stack(local_dir))
    stop_embedded(local_dir)
    print("embedded servers stopped")
    return 0


def tokens(args: argparse.Namespace) -> int:
    """The demo tokens `billing run` keeps in .local/demo-tokens.json, with the banner's links;
    only those that still work (a reset database leaves none)."""
    from demo import seed
    from devstack.supervisor import banner, tokens_file
    from models.db import session_factory

    cfg = bootstrap.environment()
    db = bootstrap.engine(cfg, pool_size=1)
    live = seed.live_tokens(session_factory(db), tokens_file(cfg), now=datetime.now(UTC))
    db.dispose()
    if not live:
        print("no demo tokens yet: `billing run` (or `make run`) makes them", file=sys.stderr)
        return 1
    port = cfg.api_port if args.port is None else args.port
    banner(
        sys.stdout, host=args.host, port=port, mock_port=cfg.mock_port, tokens=live, running=False
    )
    return 0
