"""Organizations (the paying customers) and their API tokens."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import Session, col, select

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
    if scope == TokenScope.METERING and organization is not None:
        # It posts usage for every organization and reads nothing; bound to one, it would read
        # that one's data wherever reads are scoped by organization (CHECK metering_has_no_org).
        raise InvalidValue("a metering token belongs to no organization", field=("organization",))
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


@dataclass(frozen=True)
class TokenListing:
    """A token as operators see it: never its plaintext (only the hash is stored)."""

    id: int
    scope: str
    organization_slug: str | None
    name: str
    created_at: datetime | None
    revoked_at: datetime | None


def list_tokens(
    session: Session, *, organization: tables.Organization | None = None
) -> list[TokenListing]:
    """Every token (revoked ones too, with when), or one organization's, in id order."""
    org = tables.Organization
    token = tables.ApiToken
    query = select(token, org.slug).join(
        org, col(org.id) == col(token.organization_id), isouter=True
    )
    if organization is not None:
        query = query.where(col(token.organization_id) == organization.id)
    return [
        TokenListing(
            id=t.id or 0,
            scope=t.scope,
            organization_slug=slug,
            name=t.name,
            created_at=t.created_at,
            revoked_at=t.revoked_at,
        )
        for t, slug in session.exec(query.order_by(col(token.id))).all()
    ]


def revoke_token(session: Session, token_id: int, *, now: datetime) -> tables.ApiToken:
    """Revoke a token from `now` (a token already revoked keeps its earlier time). API
    workers stop accepting it within TOKEN_CACHE_SECONDS (gql/core/tokens.py). Caller
    commits. NotFound for an unknown id."""
    row = session.get(tables.ApiToken, token_id, with_for_update=True)
    if row is None:
        raise NotFound(f"no token with id {token_id}", field=("id",))
    if row.revoked_at is None or row.revoked_at > now:
        row.revoked_at = now
        session.flush()
    return row
