"""`bill`: the command table. Every command takes --json (the answer as JSON on stdout, for
scripts) and ends with the exit codes of client.api: 0 ok, 1 refused, 2 usage, 3 token,
4 unreachable."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console

from client import commands, render
from client.api import EXIT_USAGE, Api, ClientError


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="print the answer as JSON")
    common.add_argument("--org", help="organization slug (admin tokens; members have one)")
    p = argparse.ArgumentParser(
        prog="bill",
        description="What you owe, from the billing API (BILLING_API, BILLING_TOKEN).",
    )
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("now", parents=[common], help="the month so far, projection, top apps")
    s.set_defaults(run=lambda api, a: commands.now(api, a.org), show=render.now)
    s = sub.add_parser("invoices", parents=[common], help="invoices, newest period first")
    s.add_argument("--limit", type=int, default=20)
    s.set_defaults(
        run=lambda api, a: commands.invoices(api, a.org, limit=a.limit), show=render.invoices
    )
    s = sub.add_parser("invoice", parents=[common], help="one invoice: lines, payment, links")
    s.add_argument("number", help="invoice number (ACME-0014) or id (inv_...)")
    s.set_defaults(run=lambda api, a: commands.invoice(api, a.number), show=render.invoice)
    s = sub.add_parser("usage", parents=[common], help="the month so far by product/app/region")
    s.add_argument("--app", help="only this app's lines")
    s.add_argument("--by", choices=["product", "app", "region"], default=None)
    s.set_defaults(
        run=lambda api, a: commands.usage(
            api, a.org, app=a.app, by=a.by or ("region" if a.app else "product")
        ),
        show=render.usage,
    )
    s = sub.add_parser("alerts", parents=[common], help="spend alerts: list, or set one")
    asub = s.add_subparsers(dest="alerts_command")
    s.set_defaults(run=lambda api, a: commands.alerts(api, a.org), show=render.alerts)
    a = asub.add_parser("set", parents=[common], help="alert when the month passes AMOUNT")
    a.add_argument("amount", help="in major units: 250 or 250.50")
    a.add_argument("--currency", default="USD")
    a.add_argument(
        "--forecast", action="store_true", help="when the projection's low end passes it"
    )
    a.set_defaults(
        run=lambda api, a: commands.set_alert(
            api, a.org, amount=a.amount, currency=a.currency, forecast=a.forecast
        ),
        show=render.set_alert,
    )
    a = asub.add_parser("list", parents=[common], help="the organization's spend alerts")
    a.set_defaults(run=lambda api, a: commands.alerts(api, a.org), show=render.alerts)
    return p


def main(argv: Sequence[str] | None = None, env: dict[str, str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Callable[[Api, argparse.Namespace], dict[str, Any]] = args.run
    show: Callable[[Console, dict[str, Any]], None] = args.show
    try:
        if args.command == "invoices" and args.limit < 1:
            raise ClientError("--limit must be at least 1", EXIT_USAGE)
        data = run(Api.from_env(dict(os.environ if env is None else env)), args)
    except ClientError as e:
        if args.json:
            print(json.dumps({"error": e.message, "exit_code": e.exit_code}))
        print(f"bill: {e.message}", file=sys.stderr)
        return e.exit_code
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        show(Console(), data)
    return 0
