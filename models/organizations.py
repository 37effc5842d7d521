"""Organizations (the paying customers) and their API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import datetime

from sqlmodel import Session, select

from models import tables, text
from models.errors import AlreadyExists, InvalidValue, NotFound
from models.ids import new_public_id
from models.money import normalize_currency
from models.tables import TokenScope

SLUG_RE = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
MAX_NAME = 200
TOKEN_PREFIX = "bt_"  # recognisable in logs and by secret scanners


def create(
    session: Session,
    *,
    slug: str,
    name: str,
    billing_email: str,
    default_currency: str = "USD",
    invoice_prefix: str | None = None,
) -> tables.Organization:
    """A new organization. Caller commits."""
    if not SLUG_RE.match(slug):
        raise InvalidValue("slug must be 2-63 lowercase letters, digits or dashes", field=("slug",))
    prefix = invoice_prefix or re.sub(r"[^A-Z0-9]", "", slug.upper())[:8]
    if not re.fullmatch(r"[A-Z0-9]{2,12}", prefix):
        raise InvalidValue(
            "invoice prefix must be 2-12 letters or digits", field=("invoicePrefix",)
        )
    if "@" not in billing_email:
        raise InvalidValue("billing email must be an e-mail address", field=("billingEmail",))
    text.text(name, "name", required=True, limit=MAX_NAME)
    taken = session.exec(
        select(tables.Organization.slug).where(
            (tables.Organization.slug == slug) | (tables.Organization.invoice_prefix == prefix)
        )
    ).first()
    if taken is not None:
        what = "slug" if taken == slug else "invoice prefix"
        raise AlreadyExists(
            f"an organization already has this {what} ({slug if taken == slug else prefix})",
            field=("slug",),
        )
    org = tables.Organization(
        public_id=new_public_id("org"),
        slug=slug,
        name=name,
        billing_email=billing_email,
        invoice_prefix=prefix,
        default_currency=normalize_currency(default_currency),
    )
    session.add(org)
    session.flush()
    return org


def by_slug(session: Session, slug: str) -> tables.Organization:
    org = session.exec(select(tables.Organization).where(tables.Organization.slug == slug)).first()
    if org is None:
        raise NotFound(f"no organization {slug!r}", field=("organizationSlug",))
    return org


def hash_token(plaintext: str) -> str:
    return hashlib.sha256(plaintext.encode()).hexdigest()


def create_token(
    session: Session,
    *,
    scope: TokenScope,
    organization: tables.Organization | None,
    name: str,
) -> tuple[str, tables.ApiToken]:
    """A new token; the plaintext is returned once and only its SHA-256 is stored. Caller commits.

    SHA-256 without a salt is right here: the token is 256 random bits, so there is nothing to
    brute-force, and a deterministic hash lets us find the row by an indexed equality.
    """
    if scope == TokenScope.MEMBER and organization is None:
        raise InvalidValue("a member token belongs to an organization", field=("organization",))
    plaintext = TOKEN_PREFIX + secrets.token_urlsafe(32)
    row = tables.ApiToken(
        token_sha256=hash_token(plaintext),
        scope=scope.value,
        organization_id=organization.id if organization else None,
        name=name,
    )
    session.add(row)
    session.flush()
    return plaintext, row


def resolve_token(session: Session, plaintext: str, *, now: datetime) -> tables.ApiToken | None:
    """The live token with this plaintext, or None (unknown or revoked)."""
    row = session.exec(
        select(tables.ApiToken).where(tables.ApiToken.token_sha256 == hash_token(plaintext))
    ).first()
    if row is None or (row.revoked_at is not None and row.revoked_at <= now):
        return None
    return row
