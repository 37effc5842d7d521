"""Engines and sessions. One engine per process; one session per request or task."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session


def sqlalchemy_url(database_url: str) -> str:
    """Accept plain `postgresql://` URLs and pin the psycopg 3 driver."""
    for prefix in ("postgresql+psycopg://", "postgresql://", "postgres://"):
        if database_url.startswith(prefix):
            return "postgresql+psycopg://" + database_url[len(prefix) :]
    raise ValueError(f"not a PostgreSQL URL: {database_url}")


def make_engine(
    database_url: str,
    *,
    pool_size: int = 10,
    echo: bool = False,
    pool_timeout: float = 30.0,
    connect_timeout: int | None = None,
    statement_timeout_ms: int | None = None,
) -> sa.Engine:
    """An engine; the API passes timeouts so a database that never answers costs a request
    seconds, not forever (a pool checkout, a TCP connect, one statement)."""
    connect_args: dict[str, object] = {}
    if connect_timeout is not None:
        connect_args["connect_timeout"] = connect_timeout
    if statement_timeout_ms is not None:
        connect_args["options"] = f"-c statement_timeout={statement_timeout_ms}"
    return sa.create_engine(
        sqlalchemy_url(database_url),
        pool_size=pool_size,
        max_overflow=pool_size,
        pool_timeout=pool_timeout,
        pool_pre_ping=True,
        echo=echo,
        connect_args=connect_args,
    )


def session_factory(engine: sa.Engine) -> sessionmaker[Session]:
    # expire_on_commit=False: rows stay readable after the commit that wrote them, so a resolver
    # can return the finalized invoice without another round trip.
    return sessionmaker(engine, class_=Session, expire_on_commit=False)


@contextmanager
def transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A session in one transaction: committed on success, rolled back on any exception."""
    with factory() as session, session.begin():
        yield session
