"""models/organizations.py: organizations and their API tokens (stored as SHA-256 only, resolved
by plaintext, refused once revoked), and what a revoked token gets over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select
from starlette.testclient import TestClient

from gql.core.tokens import TOKEN_CACHE_SECONDS
from models import organizations, tables
from models.errors import InvalidValue, NotFound
from models.tables import TokenScope
from settings import Settings
from tests.api_helpers import Api, MovableClock, api_app
from tests.factories import NOW, make_invoice, make_org, make_token


def _revoke(s: Session, plaintext: str, at: datetime) -> None:
    """Revocation as the schema defines it: `revoked_at` set on the token's row (there is no
    API for it yet; an operator sets it)."""
    row = s.exec(
        select(tables.ApiToken).where(
            tables.ApiToken.token_sha256 == organizations.hash_token(plaintext)
        )
    ).one()
    row.revoked_at = at
    s.flush()


def test_only_the_hash_of_a_token_is_stored(db: Session) -> None:
    org = make_org(db)
    plaintext, row = organizations.create_token(
        db, scope=TokenScope.MEMBER, organization=org, name="ci"
    )
    assert plaintext.startswith(organizations.TOKEN_PREFIX)
    assert row.token_sha256 == organizations.hash_token(plaintext) != plaintext
    stored = db.execute(sa.text("SELECT token_sha256 FROM api_tokens")).scalars().all()
    assert plaintext not in stored
    resolved = organizations.resolve_token(db, plaintext, now=NOW)
    assert resolved is not None and resolved.organization_id == org.id
    assert organizations.resolve_token(db, plaintext + "x", now=NOW) is None


def test_a_member_token_needs_an_organization(db: Session) -> None:
    with pytest.raises(InvalidValue) as err:
        organizations.create_token(db, scope=TokenScope.MEMBER, organization=None, name="x")
    assert err.value.field == ("organization",)
    admin, row = organizations.create_token(
        db, scope=TokenScope.ADMIN, organization=None, name="ops"
    )
    assert row.organization_id is None
    assert organizations.resolve_token(db, admin, now=NOW) is not None


@pytest.mark.parametrize(
    ("revoked", "resolves"),
    [
        (NOW - timedelta(days=1), False),
        (NOW, False),  # revoked from that instant on
        (NOW + timedelta(minutes=5), True),  # a revocation scheduled later: still live now
    ],
)
def test_a_revoked_token_no_longer_resolves(db: Session, revoked: datetime, resolves: bool) -> None:
    org = make_org(db)
    token = make_token(db, org)
    assert organizations.resolve_token(db, token, now=NOW) is not None
    _revoke(db, token, revoked)
    db.expire_all()
    assert (organizations.resolve_token(db, token, now=NOW) is not None) is resolves
    # Revoking one token leaves the organization's other tokens alone.
    other = make_token(db, org)
    assert organizations.resolve_token(db, other, now=NOW) is not None


def test_a_revoked_token_is_unauthenticated_over_http_within_the_cache_seconds(
    database_url: str, redis_url: str, committed: sessionmaker[Session]
) -> None:
    """The API caches token -> viewer for TOKEN_CACHE_SECONDS (gql/core/tokens.py): a revoked
    token is refused once that has passed, on the app's clock (moved here, not slept)."""
    clock = MovableClock(datetime.now(UTC))
    settings = Settings(database_url=database_url, redis_url=redis_url)
    with committed() as s, s.begin():
        org = make_org(s)
        make_invoice(s, org, status="open")
        token, kept = make_token(s, org), make_token(s, org)
    query = "{ invoices(first: 5) { nodes { id } } }"
    with TestClient(api_app(settings, lambda _: None, clock=clock)) as client:
        api = Api(client=client)
        assert len(api.data(query, token)["invoices"]["nodes"]) == 1

        with committed() as s, s.begin():
            _revoke(s, token, clock.now - timedelta(seconds=1))
        clock.now += timedelta(seconds=TOKEN_CACHE_SECONDS)
        body = api.gql(query, token)
        assert body["data"] is None
        assert [e["extensions"]["code"] for e in body["errors"]] == ["UNAUTHENTICATED"]
        assert len(api.data(query, kept)["invoices"]["nodes"]) == 1


def test_organizations_are_found_by_slug_and_validated(db: Session) -> None:
    org = make_org(db, slug="acme-cloud")
    assert organizations.by_slug(db, "acme-cloud").id == org.id
    assert org.invoice_prefix == "ACMECLOU"  # letters and digits of the slug, at most 8
    with pytest.raises(NotFound) as missing:
        organizations.by_slug(db, "nobody")
    assert missing.value.field == ("organizationSlug",)
    for bad, field in (
        ({"slug": "Bad Slug"}, "slug"),
        ({"billing_email": "nowhere"}, "billingEmail"),
        ({"invoice_prefix": "x"}, "invoicePrefix"),
    ):
        kwargs: dict[str, str] = {"slug": "fine-slug", "name": "n", "billing_email": "a@b.c"}
        kwargs.update(bad)
        with pytest.raises(InvalidValue) as err:
            organizations.create(db, **kwargs)
        assert err.value.field == (field,)
