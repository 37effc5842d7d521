"""`billing webhooks list`: the Stripe events we stored and what became of them."""

from __future__ import annotations

import argparse
import json

import bootstrap


def webhooks_list(args: argparse.Namespace) -> int:
    from models.payments import events

    factory = bootstrap.sessions(bootstrap.environment())
    with factory() as s:
        rows = events.listing(s, verdict=args.outcome, limit=args.limit)
    for row in rows:
        received = f"{row.received_at:%Y-%m-%d %H:%M:%S}" if row.received_at else "-"
        print(f"{received}  {row.id}  {row.type}  [{row.verdict}]  {row.outcome}")
        if args.payload:
            print("    " + json.dumps(row.payload, sort_keys=True)[:2000])
    if not rows:
        print("no events" + (f" with verdict {args.outcome!r}" if args.outcome else ""))
    return 0
