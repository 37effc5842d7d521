"""`billing credit-note issue|void|list` and `billing credit outage`: thin calls into
models/invoices/credit_notes.py and models/invoices/outage_credits.py.

The CLI does not enqueue: the issue makes the invoice's outbox row due in the same transaction,
and the sweeper (Celery beat) hands it to a worker within seconds.
"""

from __future__ import annotations

import argparse
import getpass
from datetime import UTC, datetime
from typing import TYPE_CHECKING

import bootstrap
from commands.output import fail

if TYPE_CHECKING:
    from models.invoices.credit_notes import CreditLineInput


def _line(spec: str) -> CreditLineInput:
    """`li_x:quantity=1`, `li_x:amount=250` or `custom:amount=100:description=text`."""
    from models.invoices.credit_notes import CreditLineInput

    head, _, rest = spec.partition(":")
    fields = dict(part.split("=", 1) for part in rest.split(":") if "=" in part)
    amount = int(fields["amount"]) if "amount" in fields else None
    if head == "custom":
        return CreditLineInput(amount_cents=amount, description=fields.get("description"))
    return CreditLineInput(
        line_item_id=head,
        quantity=fields.get("quantity"),
        amount_cents=amount,
        description=fields.get("description"),
    )


def note_issue(args: argparse.Namespace) -> int:
    from models.db import transaction
    from models.errors import DomainError
    from models.invoices import credit_notes
    from models.invoices.credit_notes import Settlement
    from models.money import format_money

    cfg = bootstrap.environment()
    factory = bootstrap.sessions(cfg)
    settled = any(v is not None for v in (args.refund, args.balance, args.out_of_band))
    try:
        lines = [_line(spec) for spec in args.line]
        with transaction(factory) as s:
            note = credit_notes.issue(
                s,
                credit_notes.invoice_by_ref(s, args.invoice),
                reason=args.reason,
                memo=args.memo,
                lines=lines,
                settlement=Settlement(args.refund or 0, args.balance or 0, args.out_of_band or 0)
                if settled
                else None,
                created_by=f"cli:{getpass.getuser()}",
                now=datetime.now(UTC),
                rollup_shards=cfg.rollup_platform_shards,
            )
    except (ValueError, KeyError) as e:
        return fail(f"bad --line: {e}")
    except DomainError as e:
        return fail(f"{e.code}: {e.message} ({'.'.join(e.field)})")
    print(
        f"issued {note.number} ({note.public_id}): {format_money(note.total_cents, note.currency)}"
    )
    return 0


def note_void(args: argparse.Namespace) -> int:
    from models.db import transaction
    from models.errors import DomainError
    from models.invoices import credit_notes

    cfg = bootstrap.environment()
    try:
        with transaction(bootstrap.sessions(cfg)) as s:
            note = credit_notes.void(
                s,
                credit_notes.credit_note_by_ref(s, args.credit_note),
                now=datetime.now(UTC),
                rollup_shards=cfg.rollup_platform_shards,
            )
    except DomainError as e:
        return fail(f"{e.code}: {e.message}")
    print(f"voided {note.number}")
    return 0


def note_list(args: argparse.Namespace) -> int:
    from models.db import transaction
    from models.errors import DomainError
    from models.invoices import credit_notes
    from models.money import format_money

    try:
        with transaction(bootstrap.sessions(bootstrap.environment())) as s:
            notes = credit_notes.listing(
                s, organization_slug=args.org, invoice_ref=args.invoice, limit=args.limit
            )
    except DomainError as e:
        return fail(e.message)
    for n in notes:
        print(
            f"{n.number:<22} {n.status:<6} {n.reason:<22} "
            f"{format_money(n.total_cents, n.currency):>14}  stripe={n.stripe_credit_note_id or '-'}"
        )
    print(f"{len(notes)} credit notes")
    return 0


def outage(args: argparse.Namespace) -> int:
    from models.db import transaction
    from models.errors import DomainError
    from models.invoices import outage_credits
    from models.money import format_money

    cfg = bootstrap.environment()
    try:
        incident = outage_credits.Incident.parse(
            region=args.region,
            start=args.start,
            end=args.end,
            products=args.products,
            percent=args.percent,
            key=args.key,
        )
        with transaction(bootstrap.sessions(cfg)) as s:
            plan = outage_credits.run(
                s,
                incident,
                dry_run=args.dry_run,
                created_by=f"cli:{getpass.getuser()}",
                now=datetime.now(UTC),
                rollup_shards=cfg.rollup_platform_shards,
            )
    except DomainError as e:
        return fail(f"{e.code}: {e.message}")
    verb = "would credit" if args.dry_run else "credited"
    for org in plan.organizations:
        print(
            f"{org.slug:<24} {verb} {format_money(org.cents, org.currency):>12} "
            f"({org.credit_notes} credit notes, {org.draft_lines} draft lines)"
        )
    if plan.already_done:
        print(f"incident {incident.key} was already credited: nothing more to do")
    print(
        f"{len(plan.organizations)} organizations, {plan.credit_notes} credit notes, "
        f"{plan.draft_lines} draft lines ({'dry run' if args.dry_run else incident.key})"
    )
    return 0
