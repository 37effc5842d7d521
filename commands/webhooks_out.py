"""`billing webhooks-out list` (the delivery log) and `billing webhook-sink` (the demo receiver)."""

from __future__ import annotations

import argparse

import bootstrap


def list_deliveries(args: argparse.Namespace) -> int:
    """Every attempt of the newest deliveries, newest first, one line each."""
    from models.webhooks_out import deliveries

    cfg = bootstrap.environment()
    with bootstrap.sessions(cfg)() as s:
        entries = deliveries.log(s, limit=args.limit, event_id=args.event, state=args.state)
    if not entries:
        print("no deliveries")
        return 0
    print(
        f"{'when (UTC)':<20} {'event':<36} {'type':<22} {'attempt':>7} {'outcome':<10} "
        f"{'http':>4} {'ms':>6}  url / error / next attempt"
    )
    for e in entries:
        when = f"{e.at:%Y-%m-%d %H:%M:%S}" if e.at else "-"
        detail = e.url
        if e.error:
            detail += f"  [{e.error}]"
        if e.next_attempt_at and e.attempt == max(
            (x.attempt or 0) for x in entries if x.event_id == e.event_id and x.url == e.url
        ):
            detail += f"  next {e.next_attempt_at:%H:%M:%S}"
        print(
            f"{when:<20} {e.event_id:<36} {e.event_type:<22} {e.attempt or '-':>7} "
            f"{e.outcome or e.state:<10} {e.http_status or '-':>4} {e.duration_ms or '-':>6}  "
            f"{detail}"
        )
    return 0


def sink(args: argparse.Namespace) -> int:
    """A tiny receiver that verifies signatures and prints one line per delivery (demo)."""
    from devstack.webhook_sink import serve

    return serve(args.host, args.port, secret_file=args.secret_file)
