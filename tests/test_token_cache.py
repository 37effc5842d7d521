"""gql/core/tokens.py: token -> viewer cached for at most TOKEN_CACHE_SECONDS, so a revoked token
stops working within that, and no request pays a token query while its entry is fresh. Time
moves by the `now` passed in: nothing sleeps."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import Session, select

from gql.core.permissions import viewer_from_authorization
from gql.core.tokens import TOKEN_CACHE_SECONDS, TokenCache
from models import organizations, tables
from tests.api_helpers import QueryCounter
from tests.factories import NOW, make_org, make_token


def _revoke(db: Session, plaintext: str, at: object) -> None:
    row = db.exec(
        select(tables.ApiToken).where(
            tables.ApiToken.token_sha256 == organizations.hash_token(plaintext)
        )
    ).one()
    row.revoked_at = at  # type: ignore[assignment]
    db.flush()
    db.expire_all()


def test_a_revoked_token_stops_within_the_stated_seconds(db: Session, engine: sa.Engine) -> None:
    assert TOKEN_CACHE_SECONDS == 5.0  # the number README and NOTES state
    token = make_token(db, make_org(db))
    header = f"Bearer {token}"
    cache = TokenCache()
    first = viewer_from_authorization(db, header, now=NOW, cache=cache)
    assert first is not None

    with QueryCounter(engine) as counter:  # a fresh entry costs no query
        again = viewer_from_authorization(db, header, now=NOW + timedelta(seconds=1), cache=cache)
    assert again == first and counter.statements == []

    _revoke(db, token, NOW + timedelta(seconds=1))
    # Still answered from the cache until the entry is TOKEN_CACHE_SECONDS old...
    almost = NOW + timedelta(seconds=TOKEN_CACHE_SECONDS - 0.001)
    assert viewer_from_authorization(db, header, now=almost, cache=cache) == first
    # ...and refused from then on, and stays refused (refusals are not cached as live).
    for later in (TOKEN_CACHE_SECONDS, TOKEN_CACHE_SECONDS + 60):
        when = NOW + timedelta(seconds=later)
        assert viewer_from_authorization(db, header, now=when, cache=cache) is None


def test_a_revocation_scheduled_ahead_stops_on_its_second(db: Session) -> None:
    token = make_token(db, make_org(db))
    _revoke(db, token, NOW + timedelta(seconds=2))
    cache = TokenCache()
    header = f"Bearer {token}"
    assert viewer_from_authorization(db, header, now=NOW, cache=cache) is not None
    assert (
        viewer_from_authorization(db, header, now=NOW + timedelta(seconds=2), cache=cache) is None
    )


def test_unknown_tokens_are_not_cached_and_new_ones_work_at_once(db: Session) -> None:
    cache = TokenCache()
    assert viewer_from_authorization(db, "Bearer bt_nope", now=NOW, cache=cache) is None
    assert cache.entries == {}
    token = make_token(db, make_org(db))
    assert viewer_from_authorization(db, f"Bearer {token}", now=NOW, cache=cache) is not None
    assert token not in str(cache.entries)  # keyed by the hash, never the plaintext


def test_the_cache_is_bounded() -> None:
    cache = TokenCache(max_entries=3)
    for i in range(10):
        cache.get_or_resolve(str(i), NOW, lambda: ("viewer", None))
    assert list(cache.entries) == ["7", "8", "9"]
