"""`billing org create`, `billing token create|list|revoke`."""

from __future__ import annotations

import argparse

import bootstrap
from commands.output import fail


def org_create(args: argparse.Namespace) -> int:
    from models import organizations
    from models.db import transaction
    from models.errors import DomainError

    factory = bootstrap.sessions(bootstrap.environment())
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
        return fail(e.message)
    print(
        f"created {org.slug} ({org.public_id}), invoices {org.invoice_prefix}-NNNN in {org.default_currency}"
    )
    return 0


def token_create(args: argparse.Namespace) -> int:
    from models import organizations
    from models.db import transaction
    from models.errors import DomainError
    from models.tables import TokenScope

    factory = bootstrap.sessions(bootstrap.environment())
    try:
        with transaction(factory) as s:
            org = organizations.by_slug(s, args.org) if args.org else None
            scope = (
                TokenScope.ADMIN
                if args.admin
                else TokenScope.METERING
                if args.metering
                else TokenScope.MEMBER
            )
            plaintext, _ = organizations.create_token(
                s, scope=scope, organization=org, name=args.name or f"cli {scope.value}"
            )
    except DomainError as e:
        return fail(e.message)
    print(plaintext)
    return 0


def token_list(args: argparse.Namespace) -> int:
    from models import organizations
    from models.errors import DomainError

    factory = bootstrap.sessions(bootstrap.environment())
    try:
        with factory() as s:
            org = organizations.by_slug(s, args.org) if args.org else None
            tokens = organizations.list_tokens(s, organization=org)
    except DomainError as e:
        return fail(e.message)
    print(f"{'ID':>6}  {'SCOPE':<8}  {'ORGANIZATION':<20}  {'CREATED':<16}  {'STATE':<27}  NAME")
    for t in tokens:
        created = f"{t.created_at:%Y-%m-%d %H:%M}" if t.created_at else "-"
        state = f"revoked {t.revoked_at:%Y-%m-%d %H:%M:%S}" if t.revoked_at else "live"
        org_slug = t.organization_slug or "-"
        print(f"{t.id:>6}  {t.scope:<8}  {org_slug:<20}  {created:<16}  {state:<27}  {t.name}")
    return 0


def token_revoke(args: argparse.Namespace) -> int:
    from datetime import UTC, datetime

    from models import organizations
    from models.db import transaction
    from models.errors import DomainError

    factory = bootstrap.sessions(bootstrap.environment())
    try:
        with transaction(factory) as s:
            row = organizations.revoke_token(s, args.id, now=datetime.now(UTC))
    except DomainError as e:
        return fail(e.message)
    print(f"token {row.id} ({row.name}) revoked at {row.revoked_at:%Y-%m-%d %H:%M:%S} UTC")
    return 0
