"""`billing close-period`: the month-end close from a terminal, with a progress bar."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta

import bootstrap
from commands.output import fail


def close_period(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from models.close import cycle, driver
    from models.close.cycle import Outcome
    from models.errors import DomainError
    from sync import sweeper
    from sync.celery_app import enqueue_sync, queue_name

    cfg = bootstrap.environment()
    try:
        period = (
            cycle.parse_period(args.period)
            if args.period
            else cycle.due_period(
                datetime.now(UTC), grace=timedelta(seconds=cfg.close_grace_seconds)
            )
        )
    except DomainError as e:
        return fail(e.message)
    factory = bootstrap.sessions(cfg, pool_size=3)
    bar = tqdm(desc=f"close {period:%Y-%m}", unit="inv", disable=args.quiet)
    # NOTE: without this, enqueue_sync published to Celery's default (unconfigured) broker and
    # failed silently: every sync of a CLI close waited for the sweeper.
    sync_cfg = bootstrap.sync_config(cfg)
    broker = bootstrap.redis_client(cfg)
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
