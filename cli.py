"""`billing`: the table of commands. Each row names a command, its arguments and the function in
`commands/` that runs it; the processes and resources are built by `bootstrap.py`."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence

from commands import accounts, close, credit, data, stack, webhooks, webhooks_out

# models.payments.events.VERDICTS, spelled here so that `billing --help` imports no models.
WEBHOOK_VERDICTS = (
    "applied",
    "ignored",
    "malformed",
    "unknown invoice",
    "not applicable to a DRAFT",
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="billing", description="Billing backend: API, sync, data.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("run", help="migrate, seed if empty, and run the whole stack")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=None, help="the API's (default BILLING_API_PORT)")
    s.set_defaults(func=stack.run)

    s = sub.add_parser("migrate", help="apply the database migrations")
    s.add_argument("revision", nargs="?", default="head")
    s.set_defaults(func=data.migrate)

    s = sub.add_parser("seed", help="load demo organizations, invoices and tokens (once)")
    s.set_defaults(func=data.seed)

    s = sub.add_parser("token", help="API tokens")
    tsub = s.add_subparsers(dest="token_command", required=True)
    t = tsub.add_parser("create", help="print a new token alone on stdout")
    t.add_argument("--org", help="organization slug (member token)")
    kind = t.add_mutually_exclusive_group()
    kind.add_argument("--admin", action="store_true", help="a platform admin token")
    kind.add_argument(
        "--metering",
        action="store_true",
        help="a metering token: posts usage for any organization, reads nothing (no --org)",
    )
    t.add_argument("--name", help="a label for the token")
    t.set_defaults(func=accounts.token_create)
    t = tsub.add_parser("list", help="tokens with id, scope, organization and state")
    t.add_argument("--org", help="only this organization's tokens (slug)")
    t.set_defaults(func=accounts.token_list)
    t = tsub.add_parser("revoke", help="stop a token from working (within 5 s on every API)")
    t.add_argument("id", type=int, help="the token's id, from `billing token list`")
    t.set_defaults(func=accounts.token_revoke)

    s = sub.add_parser("webhooks", help="the Stripe events received")
    wsub = s.add_subparsers(dest="webhooks_command", required=True)
    w = wsub.add_parser("list", help="newest first, with each event's verdict and outcome")
    w.add_argument(
        "--outcome",
        choices=WEBHOOK_VERDICTS,
        help="only events with this verdict (malformed: signed by Stripe but unreadable)",
    )
    w.add_argument("--limit", type=int, default=50)
    w.add_argument("--payload", action="store_true", help="print each event's stored body too")
    w.set_defaults(func=webhooks.webhooks_list)

    s = sub.add_parser("tokens", help="print the demo tokens and links `billing run` printed")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=None, help="the API's (default BILLING_API_PORT)")
    s.set_defaults(func=stack.tokens)

    s = sub.add_parser("generate", help="bulk-load synthetic finalized invoices with COPY")
    s.add_argument("--orgs", type=int, default=1000)
    s.add_argument("--months", type=int, default=36)
    s.add_argument("--items", type=int, default=0, help="line items per invoice")
    s.add_argument("--per-month", type=int, default=50_000, help="invoices per month")
    s.add_argument("--seed", type=int, default=1)
    s.set_defaults(func=data.generate)

    s = sub.add_parser("rollup", help="check or repair the monthly rollup")
    s.add_argument("action", choices=["verify", "rebuild"])
    s.set_defaults(func=data.rollup)

    s = sub.add_parser("usage", help="usage lines: verify, replay, create partitions")
    s.add_argument("action", choices=["verify", "replay", "partitions"])
    s.add_argument("--org", help="organization slug (replay)")
    s.add_argument("--period", help="YYYY-MM (replay)")
    s.add_argument("--months-ahead", type=int, default=2, help="partitions to create ahead")
    s.set_defaults(func=data.usage)

    s = sub.add_parser("org", help="organizations")
    osub = s.add_subparsers(dest="org_command", required=True)
    o = osub.add_parser("create", help="create an organization to bill")
    o.add_argument("--slug", required=True)
    o.add_argument("--name", required=True)
    o.add_argument("--email", required=True, help="billing e-mail")
    o.add_argument("--currency", default="USD")
    o.set_defaults(func=accounts.org_create)

    s = sub.add_parser("feed", help="a simulated metering feed posting to /v1/usage (demo)")
    s.add_argument("--url", default=None, help="default: /v1/usage on BILLING_API_PORT")
    s.add_argument("--token", required=True, help="a metering or admin token")
    s.add_argument("--every", type=float, default=3.0, help="seconds between batches")
    s.add_argument("--events", type=int, default=200, help="events per batch")
    s.add_argument("--seed", type=int, default=None)
    s.set_defaults(func=stack.feed)

    s = sub.add_parser("close-period", help="the month-end close: finalize a period's drafts")
    s.add_argument("--period", help="YYYY-MM (default: the last period past its grace)")
    s.add_argument("--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=close.close_period)

    s = sub.add_parser("credit-note", help="credit notes: corrections of finalized invoices")
    csub = s.add_subparsers(dest="credit_note_command", required=True)
    c = csub.add_parser("issue", help="issue a credit note against a finalized invoice")
    c.add_argument("--invoice", required=True, help="invoice number (ACME-0007) or inv_ id")
    c.add_argument(
        "--reason",
        required=True,
        choices=["duplicate", "fraudulent", "order_change", "product_unsatisfactory"],
    )
    c.add_argument("--memo")
    c.add_argument(
        "--line",
        action="append",
        required=True,
        help="li_ID:quantity=Q, li_ID:amount=CENTS or custom:amount=CENTS:description=TEXT",
    )
    c.add_argument("--refund", type=int, help="paid invoices: minor units refunded")
    c.add_argument("--balance", type=int, help="paid invoices: to the customer's balance")
    c.add_argument("--out-of-band", type=int, help="paid invoices: settled outside Stripe")
    c.set_defaults(func=credit.note_issue)
    c = csub.add_parser("void", help="void a credit note (gives its amount back)")
    c.add_argument("credit_note", help="credit note number (ACME-0007-CN1) or cn_ id")
    c.set_defaults(func=credit.note_void)
    c = csub.add_parser("list", help="credit notes, newest first")
    c.add_argument("--org", help="organization slug")
    c.add_argument("--invoice", help="invoice number or inv_ id")
    c.add_argument("--limit", type=int, default=50)
    c.set_defaults(func=credit.note_list)

    s = sub.add_parser("credit", help="credits computed from usage events")
    csub = s.add_subparsers(dest="credit_command", required=True)
    c = csub.add_parser("outage", help="credit every organization's usage in a region and window")
    c.add_argument("--region", required=True)
    c.add_argument("--from", dest="start", required=True, help="ISO time, e.g. 2026-11-03T10:00Z")
    c.add_argument("--to", dest="end", required=True, help="ISO time (exclusive)")
    c.add_argument("--products", help="product glob, e.g. machines-*")
    c.add_argument("--percent", type=int, default=100)
    c.add_argument("--key", help="incident key (default: from region, window, products, percent)")
    c.add_argument("--dry-run", action="store_true", help="print per organization, write nothing")
    c.set_defaults(func=credit.outage)

    s = sub.add_parser("webhooks-out", help="outbound webhooks: the delivery log")
    wsub = s.add_subparsers(dest="webhooks_command", required=True)
    w = wsub.add_parser("list", help="the newest deliveries, every attempt, newest first")
    w.add_argument("--limit", type=int, default=50, help="deliveries (each with its attempts)")
    w.add_argument("--event", help="only this event id (evt_...)")
    w.add_argument("--state", choices=["pending", "delivered", "failed", "cancelled"])
    w.set_defaults(func=webhooks_out.list_deliveries)

    s = sub.add_parser("webhook-sink", help="a demo receiver of outbound webhooks (make run)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, required=True)
    s.add_argument("--secret-file", required=True, help="file holding the endpoint's secret")
    s.set_defaults(func=webhooks_out.sink)

    s = sub.add_parser("serve", help="the GraphQL API (uvicorn)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=None, help="default: BILLING_API_PORT (8000)")
    s.add_argument("--workers", type=int, default=1)
    s.set_defaults(func=stack.serve)

    s = sub.add_parser("worker", help="a Celery worker for the Stripe sync")
    s.add_argument("--concurrency", type=int, default=4)
    s.add_argument("--hostname", default=None)
    s.add_argument("--loglevel", default="INFO")
    s.set_defaults(func=stack.worker)

    s = sub.add_parser("beat", help="Celery beat: the sync sweeper and reconciler schedule")
    s.add_argument("--schedule", help="beat's schedule file (default: under BILLING_LOCAL_DIR)")
    s.add_argument("--loglevel", default="INFO")
    s.set_defaults(func=stack.beat)

    s = sub.add_parser("mock-stripe", help="the mock Stripe HTTP server")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=None, help="default: BILLING_MOCK_PORT (12111)")
    s.add_argument(
        "--faults",
        help='start-up faults as the JSON body of POST /_mock/faults, e.g. \'{"rules": [...], "seed": 1}\'',
    )
    s.add_argument("--idempotency-ttl", type=float, default=86400.0)
    s.add_argument("--state", help="journal file that keeps objects across restarts ('none')")
    s.add_argument(
        "--webhook-url",
        default=None,
        help="where events are posted, signed with STRIPE_WEBHOOK_SECRETS' first secret; none "
        "by default (no guess that could reach another stack's API; `billing run` passes its own)",
    )
    s.set_defaults(func=stack.mock_stripe)

    s = sub.add_parser("env", help="print DATABASE_URL and REDIS_URL (starting embedded servers)")
    s.set_defaults(func=stack.env)

    s = sub.add_parser(
        "stop",
        help="stop the stack `billing run` started (its pid file), then the embedded servers",
    )
    s.set_defaults(func=stack.stop)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return func(args)


if __name__ == "__main__":
    raise SystemExit(main())
