"""Webhook endpoints: the URLs an admin registered, the event types each wants, its secret."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from datetime import datetime
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.errors import InvalidValue, NotFound
from models.webhooks_out.events import EVENT_TYPES

MAX_URL = 2048
MAX_ENDPOINTS = 20


def check_url(url: str) -> str:
    """The URL an endpoint may have: http or https with a host, no user or password in it (a
    credential in a URL ends up in logs and in the delivery log), no fragment, at most 2,048
    characters. Returns it stripped; raises InvalidValue (field url)."""
    url = (url or "").strip()
    if not url or len(url) > MAX_URL or any(c.isspace() or ord(c) < 32 for c in url):
        raise InvalidValue(f"url must be 1-{MAX_URL} characters without spaces", field=("url",))
    try:
        parts = urlsplit(url)
        _ = parts.port  # raises ValueError when the port is not a number in range
    except ValueError as e:
        raise InvalidValue(f"url is not a valid URL: {e}", field=("url",)) from e
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidValue("url must start with http:// or https://", field=("url",))
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidValue(
            "url must not carry credentials (user:password@); deliveries are signed instead",
            field=("url",),
        )
    if not parts.hostname:
        raise InvalidValue("url must name a host", field=("url",))
    if parts.fragment:
        raise InvalidValue("url must not have a #fragment", field=("url",))
    return url


def check_event_types(event_types: Sequence[str]) -> list[str]:
    """Known event types, each once, sorted; at least one. Raises InvalidValue."""
    wanted = sorted({t.strip() for t in event_types})
    if not wanted:
        raise InvalidValue("name at least one event type", field=("eventTypes",))
    unknown = [t for t in wanted if t not in EVENT_TYPES]
    if unknown:
        raise InvalidValue(
            f"unknown event types {unknown}; known: {sorted(EVENT_TYPES)}", field=("eventTypes",)
        )
    return wanted


def create_endpoint(
    session: Session, *, url: str, event_types: Sequence[str], now: datetime
) -> tables.WebhookEndpoint:
    """Register an endpoint with a new signing secret (`whsec_` + 32 random bytes, base64url).
    Raises InvalidValue (URL, event types, more than 20 live endpoints). Caller commits."""
    clean_url = check_url(url)
    types = check_event_types(event_types)
    e = tables.WebhookEndpoint
    live = session.exec(
        select(sa.func.count()).select_from(e).where(col(e.deleted_at).is_(None))
    ).one()
    if live >= MAX_ENDPOINTS:
        raise InvalidValue(f"at most {MAX_ENDPOINTS} live endpoints", field=("url",))
    row = tables.WebhookEndpoint(
        public_id=f"we_{secrets.token_hex(10)}",
        url=clean_url,
        event_types=types,
        secret=f"whsec_{secrets.token_urlsafe(32)}",
        created_at=now,
    )
    session.add(row)
    session.flush()
    return row


def live_endpoints(session: Session) -> list[tables.WebhookEndpoint]:
    """Endpoints not deleted, oldest first."""
    e = tables.WebhookEndpoint
    return list(
        session.exec(select(e).where(col(e.deleted_at).is_(None)).order_by(col(e.id))).all()
    )


def by_public_id(session: Session, public_id: str) -> tables.WebhookEndpoint | None:
    e = tables.WebhookEndpoint
    return session.exec(select(e).where(col(e.public_id) == public_id)).first()


def delete_endpoint(session: Session, public_id: str, *, now: datetime) -> tables.WebhookEndpoint:
    """Stop delivering to an endpoint: marks it deleted (its log stays readable) and cancels its
    pending deliveries. Deleting it again changes nothing. Raises NotFound. Caller commits."""
    row = by_public_id(session, public_id)
    if row is None:
        raise NotFound(f"no webhook endpoint {public_id}", field=("id",))
    if row.deleted_at is None:
        row.deleted_at = now
        session.add(row)
        session.execute(
            sa.text(
                "UPDATE webhook_deliveries SET state = 'cancelled', locked_until = NULL"
                " WHERE endpoint_id = :e AND state = 'pending'"
            ),
            {"e": row.id},
        )
        session.flush()
    return row


def ensure_endpoint(
    session: Session, *, url: str, event_types: Sequence[str], now: datetime
) -> tables.WebhookEndpoint:
    """The live endpoint with this URL, or a new one (`make run`'s demo sink, every start).
    Caller commits."""
    clean = check_url(url)
    for row in live_endpoints(session):
        if row.url == clean:
            return row
    return create_endpoint(session, url=clean, event_types=event_types, now=now)
