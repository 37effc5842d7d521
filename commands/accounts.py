"""`billing org create`, `billing token create`."""

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
            scope = TokenScope.ADMIN if args.admin else TokenScope.MEMBER
            plaintext, _ = organizations.create_token(
                s, scope=scope, organization=org, name=args.name or f"cli {scope.value}"
            )
    except DomainError as e:
        return fail(e.message)
    print(plaintext)
    return 0
