"""A database outage under a running API (issue 20): a throwaway PostgreSQL cluster of the
test's own (never the shared one) is stopped under a real uvicorn server; POST /v1/usage and
/graphql both answer a JSON 503 DATABASE_UNAVAILABLE with Retry-After; the cluster comes back,
the pipeline resends what failed, and every event is counted exactly once."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from gql.core.limits import Limits
from migrations_runner import upgrade
from models import organizations, prices
from models.db import make_engine, session_factory, transaction
from models.tables import TokenScope
from models.usage import ingest, verify
from settings import Settings
from tests.api_helpers import api_app
from tests.factories import make_org
from tests.live_server import serve

BIN = Path("/usr/lib/postgresql/15/bin")
PORTS = range(18240, 18299)  # this checkout's range (tools/HELPERS.md)

pytestmark = pytest.mark.skipif(
    not (BIN / "initdb").exists() or os.geteuid() != 0, reason="needs PostgreSQL 15 and root"
)


def _as_postgres(*args: str) -> None:
    subprocess.run(["su", "postgres", "-c", " ".join(args)], check=True, capture_output=True)


def _free_port() -> int:
    for port in PORTS:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in this checkout's range")


class Cluster:
    def __init__(self) -> None:
        self.dir = tempfile.mkdtemp(prefix="billing-outage-")
        shutil.chown(self.dir, "postgres", "postgres")
        self.port = _free_port()
        _as_postgres(str(BIN / "initdb"), "-D", self.dir, "-A", "trust", "-U", "postgres")
        self.url = f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> None:
        _as_postgres(
            str(BIN / "pg_ctl"), "-D", self.dir, "-w", "-l", f"{self.dir}/log",
            "-o", f"'-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1'", "start",
        )  # fmt: skip

    def stop(self) -> None:
        _as_postgres(str(BIN / "pg_ctl"), "-D", self.dir, "-w", "-m", "fast", "stop")


@pytest.fixture
def cluster() -> Iterator[Cluster]:
    c = Cluster()
    c.start()
    try:
        yield c
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):  # stopped by a failed test
            c.stop()
        shutil.rmtree(c.dir, ignore_errors=True)


def batch(start: int, n: int, at: datetime) -> dict[str, Any]:
    return {
        "events": [
            {
                "id": f"o{i}",
                "organizationSlug": "acme",
                "product": "egress",
                "quantity": "1",
                "occurredAt": at.isoformat(),
            }
            for i in range(start, start + n)
        ]
    }


def test_both_endpoints_answer_503_while_the_database_is_down_and_nothing_is_lost(
    cluster: Cluster, redis_url: str
) -> None:
    upgrade(cluster.url)
    now = datetime.now(UTC)
    engine = make_engine(cluster.url, pool_size=2)
    sessions = session_factory(engine)
    with transaction(sessions) as s:
        make_org(s, slug="acme")
        prices.set_price(s, product="egress", unit="GB", currency="USD", unit_price="2",
                         effective_from=now - timedelta(days=40), now=now - timedelta(days=40))  # fmt: skip
        token, _ = organizations.create_token(
            s, scope=TokenScope.METERING, organization=None, name="pipeline"
        )
        ingest.ensure_partitions(s, now=now)
    app = api_app(
        Settings(database_url=cluster.url, redis_url=redis_url),
        lambda _: None,
        limits=Limits(db_connect_timeout_seconds=2, db_pool_timeout_seconds=2),
    )
    at = now - timedelta(minutes=1)
    headers = {"Authorization": f"Bearer {token}"}
    with serve(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        first = client.post("/v1/usage", json=batch(0, 50, at), headers=headers)
        assert (first.status_code, first.json()["accepted"]) == (200, 50)

        cluster.stop()
        down = client.post("/v1/usage", json=batch(50, 50, at), headers=headers)
        graphql = client.post("/graphql", json={"query": "{ viewer { isAdmin } }"}, headers=headers)
        assert (down.status_code, down.headers["retry-after"]) == (503, "1")
        assert down.json()["code"] == "DATABASE_UNAVAILABLE"
        assert down.json()["requestId"] == down.headers["x-request-id"]
        assert graphql.status_code == 503 and graphql.headers["retry-after"] == "1"
        assert graphql.json()["errors"][0]["extensions"]["code"] == "DATABASE_UNAVAILABLE"

        cluster.start()
        # The pipeline resends the failed batch (as Retry-After tells it) with one already counted.
        answers = []
        for _ in range(5):  # pre-ping replaces the dead pooled connections; bounded, no sleep
            answer = client.post("/v1/usage", json=batch(40, 60, at), headers=headers)
            answers.append(answer.status_code)
            if answer.status_code == 200:
                break
        assert answer.status_code == 200, answers
        assert (answer.json()["accepted"], answer.json()["duplicates"]) == (50, 10)
    with transaction(sessions) as s:
        assert s.execute(sa.text("SELECT count(*) FROM usage_event_ids")).scalar_one() == 100
        assert s.execute(sa.text("SELECT sum(quantity) FROM invoice_items")).scalar_one() == 100
        assert verify.verify(s) == []
    engine.dispose()
