"""Fixtures for the sync tests: the mock Stripe over real HTTP, a Pusher wired to it, Redis keys
and a queue of this test run's own."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
import redis
import uvicorn
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from sync.breaker import Breaker
from sync.config import SyncConfig
from sync.limiter import RateLimiter
from sync.mock_stripe import create_app
from sync.push import Pusher
from sync.stripe_client import Gateway, make_client


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Mock:
    url: str

    def reset(self) -> None:
        httpx.post(f"{self.url}/_mock/reset").raise_for_status()

    def faults(self, rules: list[dict[str, Any]], **extra: Any) -> None:
        httpx.post(f"{self.url}/_mock/faults", json={"rules": rules, **extra}).raise_for_status()

    def invoices(self) -> list[dict[str, Any]]:
        data: list[dict[str, Any]] = httpx.get(f"{self.url}/_mock/invoices").json()["data"]
        return data

    def stats(self) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.url}/_mock/stats").json()
        return body

    def total_requests(self) -> int:
        return int(self.stats()["total"])


@pytest.fixture(scope="session")
def mock_server() -> Iterator[Mock]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(create_app(), host="127.0.0.1", port=port, log_level="error")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield Mock(f"http://127.0.0.1:{port}")
    server.should_exit = True
    thread.join(timeout=5)


@pytest.fixture
def mock(mock_server: Mock) -> Mock:
    mock_server.reset()
    return mock_server


@pytest.fixture
def sync_config(database_url: str, redis_url: str, mock: Mock) -> Iterator[SyncConfig]:
    queue = f"billing-test-{os.getpid()}"
    cfg = replace(
        SyncConfig(),
        database_url=database_url,
        redis_url=redis_url,
        queue=queue,
        stripe_api_base=mock.url,
        stripe_timeout_seconds=2.0,
        rate_limit_per_second=1000.0,
        backoff_base_seconds=0.01,
        backoff_cap_seconds=0.05,
        breaker_seconds=1.0,
        max_attempts=5,
    )
    client = redis.Redis.from_url(redis_url)
    client.delete(*[k for k in client.scan_iter(f"{queue}:*")] or ["-"])
    yield cfg
    client.delete(*[k for k in client.scan_iter(f"{queue}:*")] or ["-"])


def make_pusher(cfg: SyncConfig, sessions: sessionmaker[Session]) -> Pusher:
    client = redis.Redis.from_url(cfg.redis_url)
    gateway = Gateway(
        client=make_client(
            cfg.stripe_api_key, cfg.stripe_api_base, timeout=cfg.stripe_timeout_seconds
        ),
        limiter=RateLimiter(
            client, per_second=cfg.rate_limit_per_second, key=f"{cfg.queue}:stripe:bucket"
        ),
        breaker=Breaker(client, base_seconds=cfg.breaker_seconds, namespace=cfg.queue),
    )
    return Pusher(sessions=sessions, gateway=gateway, config=cfg)


@pytest.fixture
def pusher(sync_config: SyncConfig, committed: sessionmaker[Session]) -> Pusher:
    return make_pusher(sync_config, committed)
