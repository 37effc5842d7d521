"""Dependency outages, told quietly: one line when PostgreSQL or Redis goes away, one a minute
while it lasts (with the count of failed attempts), one when it is back.

Why: with PostgreSQL stopped for 20 s, a worker wrote 1,259 log lines (21 full tracebacks), one
per sweep and per message, and beat wrote ~120 lines a second when Redis went too (issue 24).
An operator needs to know that a dependency is down, since when, and that we keep trying; a
traceback per attempt says nothing more and buries everything else.

Each process (the API, each worker process, beat) keeps one `Outage` per dependency
(`POSTGRES`, `REDIS`). Failures reach it from where they are seen:
- PostgreSQL: `watch_engine` listens on an engine, so a failed connect or a lost connection
  anywhere in the process counts, and the next successful connect ends the outage;
- Redis: the callers that talk to it (the worker's tasks, beat's scheduler, /readyz).
It also paces retries: while a dependency is down, `may_try` says when the next try is due
(capped exponential backoff), so a sweep every 2 s does not become a connect every 2 s.

Plain logging and SQLAlchemy only: imported by gql, sync and bootstrap alike.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

import sqlalchemy as sa

log = logging.getLogger("billing.outage")

REPEAT_EVERY_SECONDS = 60.0  # how often a lasting outage is logged again
BACKOFF_BASE_SECONDS = 0.5
BACKOFF_CAP_SECONDS = 15.0
# SQLSTATE classes of a server that is gone or refusing: connection exceptions (08) and
# operator intervention (57P01 admin shutdown, 57P02 crash shutdown, 57P03 cannot connect now).
# A statement timeout or a lock timeout is an OperationalError too, but not an outage.
_GONE_SQLSTATES = ("08", "57P01", "57P02", "57P03")


class Outage:
    """The state of one dependency as this process sees it. Thread-safe (the API's threads)."""

    def __init__(
        self,
        dependency: str,
        *,
        logger: logging.Logger = log,
        every: float = REPEAT_EVERY_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.dependency = dependency
        self._log = logger
        self._every = every
        self._clock = clock
        self._lock = threading.Lock()
        self.since: float | None = None
        self.failures = 0
        self._logged_at = 0.0
        self._next_try = 0.0

    @property
    def down(self) -> bool:
        return self.since is not None

    def failed(self, error: BaseException) -> None:
        """One failed attempt to reach the dependency."""
        with self._lock:
            now = self._clock()
            self.failures += 1
            backoff = min(BACKOFF_CAP_SECONDS, BACKOFF_BASE_SECONDS * 2 ** min(self.failures, 16))
            self._next_try = now + backoff
            if self.since is None:
                self.since, self._logged_at = now, now
                self._log.warning(
                    "%s is unavailable (%s); retrying with backoff, one line a minute while "
                    "it lasts; nothing is lost meanwhile",
                    self.dependency,
                    _describe(error),
                    extra={"dependency": self.dependency, "failures": self.failures},
                )
            elif now - self._logged_at >= self._every:
                self._logged_at = now
                self._log.warning(
                    "%s is still unavailable after %.0f s: %d failed attempts (%s)",
                    self.dependency,
                    now - self.since,
                    self.failures,
                    _describe(error),
                    extra={"dependency": self.dependency, "failures": self.failures},
                )

    def recovered(self) -> None:
        """The dependency answered: ends the outage, if there was one."""
        with self._lock:
            if self.since is None:
                return
            seconds, failures = self._clock() - self.since, self.failures
            self.since, self.failures, self._next_try = None, 0, 0.0
        self._log.warning(
            "%s is back after %.0f s (%d failed attempts)",
            self.dependency,
            seconds,
            failures,
            extra={"dependency": self.dependency, "failures": failures},
        )

    def may_try(self) -> bool:
        """Whether to try the dependency now: always while it is up; while it is down, once
        the backoff since the last failure has passed."""
        return self.since is None or self._clock() >= self._next_try


def _describe(error: BaseException) -> str:
    """The error in one line, without the SQL or the background link."""
    inner = getattr(error, "orig", None) or error
    first = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    return f"{type(inner).__name__}: {first}"[:300]


POSTGRES = Outage("PostgreSQL")
REDIS = Outage("Redis")


def is_database_outage(error: BaseException) -> bool:
    """A PostgreSQL that is gone or refusing connections (not a timeout or a bad statement)."""
    if isinstance(error, sa.exc.DBAPIError) and error.connection_invalidated:
        return True
    if not isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return False
    state = getattr(error.orig, "sqlstate", None)
    return state is None or str(state).startswith(_GONE_SQLSTATES)


def is_redis_outage(error: BaseException) -> bool:
    """Redis (or the Celery broker on it) unreachable."""
    import redis

    if isinstance(error, redis.ConnectionError | redis.TimeoutError):
        return True
    # kombu wraps the broker's connection errors in its OperationalError.
    return type(error).__module__.startswith("kombu") and type(error).__name__ == "OperationalError"


def watch_engine(engine: sa.Engine, outage: Outage = POSTGRES) -> None:
    """Count this engine's failed connects and lost connections as `outage` failures, and end
    the outage at its next successful connect."""

    @sa.event.listens_for(engine, "handle_error")
    def _failed(context: sa.engine.ExceptionContext) -> None:
        error = context.sqlalchemy_exception or context.original_exception
        if context.is_disconnect or is_database_outage(error):
            outage.failed(context.original_exception)

    @sa.event.listens_for(engine, "connect")
    def _connected(dbapi_connection: object, record: object) -> None:
        outage.recovered()
