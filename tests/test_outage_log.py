"""`outage.Outage` (issue 24): one line when a dependency goes away, then one a minute while it
lasts with the count of failed attempts, one when it is back; and a backoff between tries.
Driven by an injected clock. Plus beat's scheduler through a Redis that is not there."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import redis

import outage
from tests.live_server import free_port


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "billing.outage"]


def test_one_line_per_outage_then_one_a_minute_then_back(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    pg = outage.Outage("PostgreSQL", clock=clock)
    caplog.set_level(logging.INFO, logger="billing.outage")
    error = ConnectionRefusedError("Connection refused")
    # 150 s of failures, one a second: the first line, then one at 60 s and one at 120 s.
    for _ in range(150):
        pg.failed(error)
        clock.now += 1
    assert pg.down and pg.failures == 150
    pg.recovered()
    pg.recovered()  # already up: nothing more to say
    lines = _lines(caplog)
    assert len(lines) == 4, lines
    assert lines[0].startswith("PostgreSQL is unavailable (ConnectionRefusedError")
    assert "still unavailable after 60 s: 61 failed attempts" in lines[1]
    assert "still unavailable after 120 s: 121 failed attempts" in lines[2]
    assert lines[3] == "PostgreSQL is back after 150 s (150 failed attempts)"
    assert not pg.down and pg.may_try()


def test_tries_back_off_while_down_up_to_a_cap() -> None:
    clock = Clock()
    dep = outage.Outage("Redis", clock=clock)
    waits = []
    for _ in range(8):
        dep.failed(OSError("down"))
        assert not dep.may_try()
        start = clock.now
        while not dep.may_try():
            clock.now += 0.25
        waits.append(clock.now - start)
    assert waits == sorted(waits) and waits[0] >= 0.5
    assert max(waits) <= outage.BACKOFF_CAP_SECONDS + 0.25


def test_what_counts_as_an_outage() -> None:
    import psycopg
    import sqlalchemy as sa

    refused = sa.exc.OperationalError("SELECT 1", {}, psycopg.OperationalError("refused"))
    assert outage.is_database_outage(refused)
    timeout = sa.exc.OperationalError("SELECT 1", {}, psycopg.errors.QueryCanceled("timeout"))
    assert not outage.is_database_outage(timeout)
    assert not outage.is_database_outage(ValueError("bug"))
    assert outage.is_redis_outage(redis.ConnectionError("refused"))
    assert not outage.is_redis_outage(redis.ResponseError("WRONGTYPE"))


def test_beat_tells_a_redis_outage_once_and_sends_nothing_meanwhile(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from celery import Celery
    from celery.beat import ScheduleEntry

    from sync.beat import QuietScheduler

    clock = Clock()
    monkeypatch.setattr(outage, "REDIS", outage.Outage("Redis", clock=clock))
    app = Celery("beat-test", broker=f"redis://127.0.0.1:{free_port()}/0")
    app.conf.broker_connection_timeout = 0.5
    app.conf.broker_connection_max_retries = 0
    app.conf.broker_transport_options = {"max_retries": 0}
    scheduler = QuietScheduler(app=app, schedule_filename=str(tmp_path / "beat"))
    entry = ScheduleEntry(name="sweep", task="sync.sweep", schedule=2.0, app=app)
    caplog.set_level(logging.INFO, logger="billing.outage")
    for _ in range(40):  # 40 due ticks, 0.5 s apart
        assert scheduler.apply_async(entry, advance=False) is None
        clock.now += 0.5
    assert outage.REDIS.down
    lines = _lines(caplog)
    assert len(lines) == 1 and lines[0].startswith("Redis is unavailable"), lines
    # Backing off: far fewer tries than ticks.
    assert outage.REDIS.failures < 10
