"""Outbound webhooks (models/webhooks_out, sync/webhooks_out, gql/webhooks_out): endpoints and
their URL rules, events written in the transaction of what they announce, the signature, and
end to end with real `celery worker` and `celery beat` processes delivering to a real HTTP
receiver that verifies every signature and fails the first attempt."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import alerts
from models.errors import InvalidValue, NotFound
from models.invoices import credit_notes
from models.invoices.credit_notes import CreditLineInput
from models.usage import ingest
from models.webhooks_out import deliveries, endpoints, events
from settings import PROJECT_ROOT
from sync.config import SyncConfig
from sync.webhooks_out import deliver, signing
from sync.webhooks_out.config import OutConfig
from tests.api_helpers import Api
from tests.factories import SHARDS, make_invoice, make_org, make_token
from tests.sync_helpers import mock, mock_server, sync_config  # noqa: F401
from tests.test_close import IN_FEB, ev, seed_prices
from tests.test_sync_worker import Spawn, spawn  # noqa: F401

NOW = datetime(2026, 2, 10, 12, tzinfo=UTC)
ALL = list(events.EVENT_TYPES)


# --- a receiver that checks signatures -------------------------------------------------------


@dataclass
class Received:
    event_id: str
    event_type: str
    header_event_id: str
    signature_ok: bool
    status: int
    body: dict[str, Any]


@dataclass
class Receiver:
    """A real HTTP server: verifies each delivery's Billing-Signature with the endpoint's
    secret (set once the endpoint exists) and answers `plan`'s statuses in turn, then 200."""

    url: str = ""
    secret: str = ""
    plan: list[int] = field(default_factory=list)
    got: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def handle(self, raw: bytes, headers: Any) -> int:
        with self.lock:
            status = self.plan.pop(0) if self.plan else 200
            doc = json.loads(raw)
            ok = signing.verify(self.secret, headers.get(signing.HEADER, ""), raw, now=time.time())
            self.got.append(
                Received(
                    doc["id"], doc["type"], headers.get("Billing-Event-Id", ""), ok, status, doc
                )
            )
            return status if ok else 400


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    rec = Receiver()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            status = rec.handle(raw, self.headers)
            self.send_response(status)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok")

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    rec.url = f"http://127.0.0.1:{server.server_address[1]}/hooks"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield rec
    server.shutdown()
    server.server_close()


# --- endpoints --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "ftp://example.com/hook",
        "file:///etc/passwd",
        "http://user:pass@example.com/hook",
        "https://token@example.com/hook",
        "http:///nohost",
        "https://example.com/a b",
        "https://example.com/#frag",
        "http://example.com:99999/",
        "",
        "https://example.com/" + "a" * 2100,
    ],
)
def test_an_endpoint_url_must_be_http_without_credentials(db: Session, url: str) -> None:
    with pytest.raises(InvalidValue) as e:
        endpoints.create_endpoint(db, url=url, event_types=ALL, now=NOW)
    assert e.value.field == ("url",)
    assert db.execute(sa.text("SELECT count(*) FROM webhook_endpoints")).scalar_one() == 0


def test_event_types_are_checked(db: Session) -> None:
    with pytest.raises(InvalidValue):
        endpoints.create_endpoint(db, url="https://example.com/h", event_types=[], now=NOW)
    with pytest.raises(InvalidValue) as e:
        endpoints.create_endpoint(
            db, url="https://example.com/h", event_types=["invoice.eaten"], now=NOW
        )
    assert "invoice.eaten" in e.value.message


def test_an_endpoint_gets_a_secret_and_deleting_it_cancels_its_pending_deliveries(
    db: Session,
) -> None:
    ep = endpoints.create_endpoint(
        db, url="https://example.com/h", event_types=["invoice.finalized"], now=NOW
    )
    assert ep.secret.startswith("whsec_") and len(ep.secret) > 40
    make_invoice(db, make_org(db, slug="acme"), status="open")
    (state,) = db.execute(sa.text("SELECT state FROM webhook_deliveries")).scalars()
    assert state == "pending"
    endpoints.delete_endpoint(db, ep.public_id, now=NOW)
    assert db.execute(sa.text("SELECT state FROM webhook_deliveries")).scalar_one() == "cancelled"
    assert endpoints.live_endpoints(db) == []
    endpoints.delete_endpoint(db, ep.public_id, now=NOW)  # again: nothing changes
    with pytest.raises(NotFound):
        endpoints.delete_endpoint(db, "we_missing", now=NOW)


# --- events in the transaction of what they announce ------------------------------------------


def _events(s: Session) -> list[Any]:
    return list(
        s.execute(
            sa.text(
                "SELECT e.id, e.type, e.payload, count(d.id) AS deliveries FROM webhook_events e"
                " LEFT JOIN webhook_deliveries d ON d.event_id = e.id GROUP BY e.id ORDER BY e.id"
            )
        ).all()
    )


def test_finalizing_writes_invoice_finalized_with_a_delivery_per_endpoint_that_wants_it(
    db: Session,
) -> None:
    endpoints.create_endpoint(db, url="https://a.example/h", event_types=ALL, now=NOW)
    endpoints.create_endpoint(
        db, url="https://b.example/h", event_types=["invoice.finalized"], now=NOW
    )
    endpoints.create_endpoint(
        db, url="https://c.example/h", event_types=["spend_alert.fired"], now=NOW
    )
    org = make_org(db, slug="acme")
    draft = make_invoice(db, org, status="draft")
    assert _events(db) == []  # a draft announces nothing
    inv = make_invoice(db, org, status="open")
    (event,) = _events(db)
    assert event.type == "invoice.finalized" and event.deliveries == 2
    assert event.id.startswith("evt_") and len(event.id) == 36
    assert event.payload["id"] == inv.public_id and event.payload["number"] == inv.number
    assert event.payload["total_cents"] == inv.total_cents
    assert event.payload["organization"] == "acme" and event.payload["period"] == "2026-02"
    assert draft.status == "draft"


def test_no_endpoint_no_event(db: Session) -> None:
    make_invoice(db, make_org(db, slug="acme"), status="open")
    assert _events(db) == []
    assert (
        events.emit(
            db, events.CREDIT_NOTE_ISSUED, organization_id=None, object_id=None, payload={}, now=NOW
        )
        is None
    )


def test_emit_is_what_other_code_calls_for_credit_notes(db: Session) -> None:
    endpoints.create_endpoint(
        db, url="https://a.example/h", event_types=["credit_note.issued"], now=NOW
    )
    org = make_org(db, slug="acme")
    event_id = events.emit(
        db,
        events.CREDIT_NOTE_ISSUED,
        organization_id=org.id,
        object_id="cn_1",
        payload={"id": "cn_1", "amount_cents": 500},
        now=NOW,
    )
    (event,) = _events(db)
    assert event.id == event_id and event.deliveries == 1
    with pytest.raises(ValueError):
        events.emit(db, "invoice.eaten", organization_id=None, object_id=None, payload={}, now=NOW)


def test_issuing_a_credit_note_writes_one_credit_note_issued_event_and_delivery(
    db: Session,
) -> None:
    endpoints.create_endpoint(
        db, url="https://a.example/h", event_types=["credit_note.issued"], now=NOW
    )
    org = make_org(db, slug="acme")
    inv = make_invoice(db, org, status="open", lines=2)
    assert _events(db) == []  # finalizing is not what this endpoint wants
    note = credit_notes.issue(
        db,
        inv,
        reason="duplicate",
        memo=None,
        lines=[CreditLineInput(description="goodwill", amount_cents=100)],
        settlement=None,
        created_by="test",
        now=NOW,
        rollup_shards=SHARDS,
    )
    (event,) = _events(db)
    assert event.type == "credit_note.issued" and event.deliveries == 1
    assert event.payload == {
        "id": note.public_id,
        "number": note.number,
        "invoice": {"id": inv.public_id, "number": inv.number},
        "organization": "acme",
        "total_cents": 100,
        "currency": "USD",
        "reason": "duplicate",
        "issued_at": NOW.isoformat(),
    }
    assert (
        db.execute(sa.text("SELECT object_id FROM webhook_events")).scalar_one() == note.public_id
    )


def test_a_credit_note_is_never_announced_as_a_spend_alert(db: Session) -> None:
    """Only spend alerts' notification rows become spend_alert.fired events; a credit note is
    announced once, as credit_note.issued."""
    endpoints.create_endpoint(
        db, url="https://a.example/h", event_types=["spend_alert.fired"], now=NOW
    )
    inv = make_invoice(db, make_org(db, slug="acme"), status="open", lines=2)
    credit_notes.issue(
        db,
        inv,
        reason="duplicate",
        memo=None,
        lines=[CreditLineInput(description="goodwill", amount_cents=100)],
        settlement=None,
        created_by="test",
        now=NOW,
        rollup_shards=SHARDS,
    )
    events.promote_notifications(db, batch=10, now=NOW)
    assert [e.type for e in _events(db)] == []


def test_a_spend_alert_notification_becomes_one_spend_alert_fired_event(db: Session) -> None:
    endpoints.create_endpoint(
        db, url="https://a.example/h", event_types=["spend_alert.fired"], now=NOW
    )
    org = make_org(db, slug="acme")
    seed_prices(db)
    alerts.set_spend_alert(db, org, threshold_cents=20, currency="USD", now=IN_FEB)
    ingest.record_usage(db, [ev("a", "acme", quantity="1000000")], now=IN_FEB)
    assert events.promote_notifications(db, batch=10, now=NOW) == 1
    (event,) = _events(db)
    assert event.type == "spend_alert.fired" and event.deliveries == 1
    assert event.payload["threshold_cents"] == 20 and event.payload["organization"] == "acme"
    assert event.payload["notification_kind"] == "spend_alert"
    assert events.promote_notifications(db, batch=10, now=NOW) == 0  # sent once


# --- the signature and the backoff ------------------------------------------------------------


def test_the_signature_is_stripe_style_and_verifies() -> None:
    raw = signing.body("evt_1", "invoice.finalized", NOW, {"id": "inv_1"})
    value = signing.header("whsec_x", 1_700_000_000, raw)
    t, v1 = value.split(",")
    assert t == "t=1700000000" and v1.startswith("v1=") and len(v1) == 3 + 64
    import hashlib
    import hmac

    expected = hmac.new(b"whsec_x", b"1700000000." + raw, hashlib.sha256).hexdigest()
    assert v1 == f"v1={expected}"
    assert signing.verify("whsec_x", value, raw, now=1_700_000_100)
    assert not signing.verify("whsec_y", value, raw, now=1_700_000_100)
    assert not signing.verify("whsec_x", value, raw + b" ", now=1_700_000_100)
    assert not signing.verify("whsec_x", value, raw, now=1_700_001_000)  # too old: a replay


def test_backoff_is_capped_exponential_with_jitter_and_gives_up_after_a_day() -> None:
    rng = random.Random(1)
    waits = [deliveries.backoff_seconds(n, base=30, cap=3600, rng=rng) for n in range(1, 12)]
    steps = [min(3600, 30 * 2 ** (n - 1)) for n in range(1, 12)]
    assert all(s / 2 <= w <= s for w, s in zip(waits, steps, strict=True))
    # How many attempts fit in a day with the defaults (the docs quote this).
    cfg, total, n = OutConfig(), 0.0, 0
    while total <= cfg.give_up_after_seconds:
        n += 1
        total += min(cfg.backoff_cap_seconds, cfg.backoff_base_seconds * 2 ** (n - 1))
    assert 25 <= n <= 40


def test_an_endpoint_that_never_answers_cannot_hold_a_worker(
    committed: sessionmaker[Session],
) -> None:
    """A server that accepts and then says nothing: the attempt ends at the timeout."""
    import socket

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    try:
        with committed() as s, s.begin():
            endpoints.create_endpoint(s, url=f"http://127.0.0.1:{port}/", event_types=ALL, now=NOW)
            make_invoice(s, make_org(s, slug="acme"), status="open", now=datetime.now(UTC))
        cfg = OutConfig(timeout_seconds=0.5, connect_timeout_seconds=0.5)
        with committed() as s, s.begin():
            (delivery_id,) = deliveries.claim_due(
                s, batch=10, hold_seconds=60, now=datetime.now(UTC)
            )
        started = time.monotonic()
        with deliver.client(cfg) as http:
            outcome = deliver.attempt_delivery(
                committed, delivery_id, cfg, rng=random.Random(1), http=http
            )
        assert time.monotonic() - started < 3
        assert outcome == "retry"
        with committed() as s:
            (entry,) = deliveries.log(s)
        assert entry.error is not None and entry.error.startswith("timeout")
    finally:
        listener.close()


# --- GraphQL ----------------------------------------------------------------------------------

CREATE = """mutation($url: String!, $types: [String!]!, $key: String) {
  createWebhookEndpoint(input: {url: $url, eventTypes: $types}, idempotencyKey: $key) {
    webhookEndpoint { id url eventTypes } secret userErrors { field code message } } }"""


def test_admins_register_list_and_delete_endpoints_and_see_the_secret_once(
    api: Api, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="acme")
        admin, member = make_token(s, None, admin=True), make_token(s, org)
    out = api.data(CREATE, admin, url="https://hooks.example/b", types=ALL, key="k1")
    payload = out["createWebhookEndpoint"]
    assert payload["userErrors"] == [] and payload["secret"].startswith("whsec_")
    endpoint_id = payload["webhookEndpoint"]["id"]
    again = api.data(CREATE, admin, url="https://hooks.example/b", types=ALL, key="k1")
    assert again["createWebhookEndpoint"]["webhookEndpoint"]["id"] == endpoint_id  # a replay
    with committed() as s:
        assert s.execute(sa.text("SELECT count(*) FROM webhook_endpoints")).scalar_one() == 1
        stored = s.execute(sa.text("SELECT outcome::text FROM idempotency_keys")).scalar_one()
    assert payload["secret"] not in stored  # the replay reads it, the key row keeps no copy

    listed = api.data("{ webhookEndpoints { id url eventTypes } }", admin)["webhookEndpoints"]
    assert listed == [payload["webhookEndpoint"]]
    no_secret = api.gql("{ webhookEndpoints { secret } }", admin)["errors"][0]["message"]
    assert "Cannot query field 'secret'" in no_secret
    body = api.gql("{ webhookEndpoints { id } }", member)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    body = api.gql(CREATE, member, url="https://hooks.example/c", types=ALL)
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"

    bad = api.data(CREATE, admin, url="http://u:p@hooks.example/", types=ALL)
    assert bad["createWebhookEndpoint"]["userErrors"][0]["field"] == ["url"]
    assert bad["createWebhookEndpoint"]["webhookEndpoint"] is None

    deleted = api.data(
        """mutation($id: ID!) { deleteWebhookEndpoint(input: {id: $id}, idempotencyKey: "d1") {
             webhookEndpoint { id deletedAt } userErrors { code } } }""",
        admin,
        id=endpoint_id,
    )["deleteWebhookEndpoint"]
    assert deleted["userErrors"] == [] and deleted["webhookEndpoint"]["deletedAt"]
    assert api.data("{ webhookEndpoints { id } }", admin)["webhookEndpoints"] == []


# --- end to end: real worker, real beat, real receiver ----------------------------------------


def _wait(predicate: Any, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def test_a_spend_alert_is_delivered_signed_and_again_after_the_endpoint_fails_once(
    # `committed` first: set up before, so torn down (TRUNCATE) after, the worker and beat stop.
    committed: sessionmaker[Session],
    spawn: Spawn,  # noqa: F811
    sync_config: SyncConfig,  # noqa: F811
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Tiny backoff and a fast sweep, for the worker and beat processes spawned below.
    monkeypatch.setenv("WEBHOOKS_OUT_BACKOFF_BASE", "0.05")
    monkeypatch.setenv("WEBHOOKS_OUT_BACKOFF_CAP", "0.2")
    monkeypatch.setenv("WEBHOOKS_OUT_SWEEP_EVERY", "0.3")
    with committed() as s, s.begin():
        ep = endpoints.create_endpoint(
            s, url=receiver.url, event_types=["spend_alert.fired"], now=datetime.now(UTC)
        )
        org = make_org(s, slug="acme")
        seed_prices(s)
        alerts.set_spend_alert(s, org, threshold_cents=20, currency="USD", now=IN_FEB)
    receiver.secret = ep.secret
    receiver.plan = [500]  # the first attempt fails
    with committed() as s, s.begin():  # the ingest transaction writes the notification
        ingest.record_usage(s, [ev("a", "acme", quantity="1000000")], now=IN_FEB)

    spawn("worker")
    spawn("beat")
    assert _wait(lambda: len(receiver.got) >= 2, seconds=60), receiver.got
    first, second = receiver.got[:2]
    assert first.status == 500 and second.status == 200
    assert first.signature_ok and second.signature_ok
    assert first.event_id == second.event_id == first.header_event_id
    assert first.event_type == "spend_alert.fired"
    assert first.body == second.body  # the same event, byte for byte after parsing
    assert first.body["data"]["object"]["threshold_cents"] == 20

    def delivered() -> bool:
        # A session per poll, closed at once: an open one would hold its snapshot and its
        # locks, and the fixtures' TRUNCATE at teardown would wait on it forever.
        with committed() as poll:
            state = poll.execute(sa.text("SELECT state FROM webhook_deliveries")).scalar_one()
        return bool(state == "delivered")

    assert _wait(delivered, seconds=10)
    with committed() as s:
        log = deliveries.log(s)
    assert [(e.attempt, e.outcome, e.http_status) for e in log] == [
        (2, "delivered", 200),
        (1, "retry", 500),
    ]
    assert {e.event_id for e in log} == {first.event_id}

    # The operator's view of the same log.
    out = subprocess.run(
        [sys.executable, "-m", "cli", "webhooks-out", "list"],
        cwd=PROJECT_ROOT,
        env={
            **os.environ,
            "DATABASE_URL": sync_config.database_url,
            "REDIS_URL": sync_config.redis_url,
        },
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stdout.splitlines() if first.event_id in line]
    assert len(lines) == 2 and "delivered" in lines[0] and "500" in lines[1], out.stdout
    assert receiver.plan == []


def test_a_failed_payment_from_stripe_emits_invoice_payment_failed_once(db: Session) -> None:
    from models.payments import collection
    from models.payments import events as payment_events

    endpoints.create_endpoint(
        db, url="https://a.example/h", event_types=["invoice.payment_failed"], now=NOW
    )
    inv = make_invoice(db, make_org(db, slug="acme"), status="open")
    db.execute(
        sa.text("UPDATE invoices SET stripe_invoice_id = 'in_1' WHERE id = :i"), {"i": inv.id}
    )
    obj = {
        "id": "in_1",
        "object": "invoice",
        "metadata": {"invoice_id": inv.public_id},
        "attempt_count": 2,
        "next_payment_attempt": None,
    }

    def failed(event_id: str, created: datetime) -> payment_events.Event:
        body = {"id": event_id, "object": "event", "type": "invoice.payment_failed",
                "created": int(created.timestamp()), "data": {"object": obj}}  # fmt: skip
        return payment_events.read(
            body, handled=collection.HANDLED, now=NOW, skew=timedelta(minutes=5)
        )

    assert collection.handle(db, failed("evt_s1", NOW), now=NOW).outcome == "payment failed"
    assert collection.handle(db, failed("evt_s1", NOW), now=NOW).outcome == "duplicate"
    (event,) = _events(db)
    assert event.type == "invoice.payment_failed" and event.deliveries == 1
    assert event.payload["id"] == inv.public_id and event.payload["attempt_count"] == 2
    assert event.payload["stripe_event_id"] == "evt_s1"


def test_make_runs_sink_is_registered_once_and_verifies_what_it_receives(
    committed: sessionmaker[Session], tmp_path: Any, database_url: str, redis_url: str
) -> None:
    """The dev stack's part: one endpoint on the sink (reused by the next start), its secret in
    a file only the user reads, and the sink process printing each verified delivery."""
    from devstack.webhook_sink import register_demo_endpoint
    from tests.live_server import free_port

    port = free_port()
    secret_file = tmp_path / "sink-secret"
    url = register_demo_endpoint(committed, port=port, secret_file=secret_file)
    assert register_demo_endpoint(committed, port=port, secret_file=secret_file) == url
    with committed() as s:
        (ep,) = endpoints.live_endpoints(s)
    assert ep.url == url and sorted(ep.event_types) == sorted(ALL)
    assert secret_file.read_text() == ep.secret and secret_file.stat().st_mode & 0o077 == 0

    sink = subprocess.Popen(
        [sys.executable, "-m", "cli", "webhook-sink", "--port", str(port),
         "--secret-file", str(secret_file)],
        cwd=PROJECT_ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "REDIS_URL": redis_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )  # fmt: skip
    try:
        assert sink.stdout is not None
        assert "listening" in sink.stdout.readline()
        with committed() as s, s.begin():
            make_invoice(s, make_org(s, slug="acme"), status="open", now=datetime.now(UTC))
        with committed() as s, s.begin():
            (delivery_id,) = deliveries.claim_due(
                s, batch=10, hold_seconds=60, now=datetime.now(UTC)
            )
        with deliver.client(OutConfig()) as http:
            outcome = deliver.attempt_delivery(
                committed, delivery_id, OutConfig(), rng=random.Random(1), http=http
            )
        assert outcome == "delivered"
        line = sink.stdout.readline()
        assert "invoice.finalized" in line and "acme" in line and "(signature ok)" in line
    finally:
        sink.terminate()
        sink.wait(timeout=10)
