"""Webhooks in (`POST /webhooks/stripe`) and payment status out (`markInvoicePaid` -> Stripe
`pay`): verified with the SDK's signature check, stored once, safe duplicated and out of order."""

from __future__ import annotations

import json
import logging
import select
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
import redis
import sqlalchemy as sa
import uvicorn
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from starlette.testclient import TestClient

import bootstrap
from gql.app import create_app
from models import tables
from models.db import make_engine
from models.invoices import lifecycle
from settings import Settings
from stripe_mock.webhooks import sign
from sync.attempt import Outcome, Runtime
from tests.factories import make_invoice, make_org, make_token
from tests.sync_helpers import Mock, finalized, history, run_once, sync_row

NEW, OLD = "whsec_new_secret", "whsec_old_secret"


@contextmanager
def serving(app: Any) -> Iterator[str]:
    """The API app on a free loopback port in a thread, so the mock can post webhooks to it."""
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the API did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def hooks(database_url: str, redis_url: str) -> Iterator[TestClient]:
    cfg = Settings(
        database_url=database_url, redis_url=redis_url, stripe_webhook_secrets=f"{NEW},{OLD}"
    )
    engine = make_engine(database_url, pool_size=2)
    app = create_app(
        cfg,
        engine=engine,
        redis=redis.Redis.from_url(redis_url, socket_timeout=1),
        enqueue_sync=lambda _: None,
        routes=bootstrap.webhook_routes(cfg, engine),
    )
    with TestClient(app) as client:  # its lifespan disposes the engine and Redis client
        yield client


def on_stripe(factory: sessionmaker[Session]) -> tables.Invoice:
    """A finalized invoice that the sync has put on Stripe (as far as our row knows)."""
    inv = finalized(factory, lines=2, slug="hooked")
    remote = f"in_{uuid.uuid4().hex[:20]}"
    with factory() as s, s.begin():
        s.execute(
            sa.text("UPDATE invoices SET stripe_invoice_id = :r WHERE id = :i"),
            {"r": remote, "i": inv.id},
        )
        s.execute(
            sa.text("UPDATE invoice_sync SET state = 'synced' WHERE invoice_id = :i"),
            {"i": inv.id},
        )
    inv.stripe_invoice_id = remote
    return inv


def event(inv: tables.Invoice, kind: str, *, created: int, **fields: Any) -> dict[str, Any]:
    obj = {
        "id": inv.stripe_invoice_id,
        "object": "invoice",
        "status": "open",
        "total": inv.total_cents,
        "currency": "usd",
        "metadata": {"invoice_id": inv.public_id},
        "attempt_count": 0,
        "next_payment_attempt": None,
        "status_transitions": {"paid_at": None},
        **fields,
    }
    return {
        "id": f"evt_{uuid.uuid4().hex[:20]}",
        "object": "event",
        "type": kind,
        "created": created,
        "data": {"object": obj},
    }


def post(
    client: TestClient,
    body: dict[str, Any] | str,
    *,
    secrets: list[str] | None = None,
    at: int | None = None,
) -> httpx.Response:
    payload = body if isinstance(body, str) else json.dumps(body)
    header = sign(payload, secrets or [NEW], timestamp=at or int(time.time()))
    return client.post(
        "/webhooks/stripe",
        content=payload.encode(),
        headers={"Stripe-Signature": header, "Content-Type": "application/json"},
    )


def invoice_row(factory: sessionmaker[Session], inv: tables.Invoice) -> tables.Invoice:
    with factory() as s:
        return s.get_one(tables.Invoice, inv.id)


def events_stored(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.execute(sa.text("SELECT count(*) FROM stripe_events")).scalar_one())


@pytest.fixture(autouse=True)
def _no_events_left(committed: sessionmaker[Session]) -> Iterator[None]:
    yield
    with committed() as s, s.begin():  # not truncated with the other tables (no FK to them)
        s.execute(sa.text("DELETE FROM stripe_events"))


def test_invoice_paid_marks_it_paid(hooks: TestClient, committed: sessionmaker[Session]) -> None:
    inv = on_stripe(committed)
    paid_at = int(time.time()) - 60
    body = event(inv, "invoice.paid", created=paid_at, status="paid",
                 status_transitions={"paid_at": paid_at}, attempt_count=1)  # fmt: skip
    response = post(hooks, body)
    assert response.status_code == 200 and response.json()["outcome"] == "paid"
    row = invoice_row(committed, inv)
    assert row.status == "paid" and row.paid_at == datetime.fromtimestamp(paid_at, UTC)
    with committed() as s:
        stored = s.get_one(tables.StripeEvent, body["id"])
        token = make_token(s, None, admin=True)
        s.commit()
    assert (stored.type, stored.outcome, stored.object_id) == (
        "invoice.paid",
        "paid",
        inv.stripe_invoice_id,
    )
    data = hooks.post(
        "/graphql",
        json={
            "query": "query($id: ID!) { invoice(id: $id) { status paidAt payment { status attemptCount } } }",
            "variables": {"id": inv.public_id},
        },
        headers={"Authorization": f"Bearer {token}"},
    ).json()["data"]["invoice"]
    assert data["status"] == "PAID" and data["payment"] == {
        "status": "SUCCEEDED",
        "attemptCount": 1,
    }


@pytest.mark.parametrize(
    "case", ["bad_signature", "stale", "malformed", "no_header", "unknown_secret"]
)
def test_refused_requests_write_nothing(
    hooks: TestClient, committed: sessionmaker[Session], case: str
) -> None:
    inv = on_stripe(committed)
    body = event(inv, "invoice.paid", created=int(time.time()), status="paid")
    payload = json.dumps(body)
    if case == "bad_signature":
        header = sign(payload, [NEW], timestamp=int(time.time())).replace("v1=", "v1=00", 1)
        response = hooks.post(
            "/webhooks/stripe", content=payload, headers={"Stripe-Signature": header}
        )
    elif case == "stale":
        # Signed correctly, six minutes ago: outside the five-minute tolerance.
        response = post(hooks, body, at=int(time.time()) - 360)
    elif case == "malformed":
        response = post(hooks, "{not json")
    elif case == "no_header":
        response = hooks.post("/webhooks/stripe", content=payload)
    else:
        response = post(hooks, body, secrets=["whsec_someone_else"])
    assert response.status_code == 400, response.text
    assert invoice_row(committed, inv).status == "open"
    assert events_stored(committed) == 0


def test_secret_rotation_accepts_old_new_and_both(
    hooks: TestClient, committed: sessionmaker[Session]
) -> None:
    inv = on_stripe(committed)
    now = int(time.time())
    for secrets in ([OLD], [NEW], ["whsec_retired", NEW]):
        body = event(inv, "invoice.payment_failed", created=now, attempt_count=1)
        assert post(hooks, body, secrets=secrets).status_code == 200
    assert events_stored(committed) == 3


def test_a_duplicate_changes_nothing(hooks: TestClient, committed: sessionmaker[Session]) -> None:
    inv = on_stripe(committed)
    body = event(inv, "invoice.payment_failed", created=int(time.time()), attempt_count=1,
                 next_payment_attempt=int(time.time()) + 86400)  # fmt: skip
    assert post(hooks, body).json()["outcome"] == "payment failed"
    assert post(hooks, body).json()["outcome"] == "duplicate"
    assert events_stored(committed) == 1
    with committed() as s:
        payment = s.get_one(tables.InvoicePayment, inv.id)
    assert (payment.status, payment.attempt_count) == ("failed", 1)
    assert payment.last_failure_message and "attempt 1 failed" in payment.last_failure_message
    assert payment.next_attempt_at is not None


def test_out_of_order_events_act_on_the_current_state(
    hooks: TestClient, committed: sessionmaker[Session]
) -> None:
    inv = on_stripe(committed)
    t = int(time.time()) - 100
    failed_1 = event(inv, "invoice.payment_failed", created=t, attempt_count=1)
    failed_2 = event(inv, "invoice.payment_failed", created=t + 10, attempt_count=2)
    paid = event(inv, "invoice.paid", created=t + 20, status="paid", attempt_count=3,
                 status_transitions={"paid_at": t + 20})  # fmt: skip
    # Delivered newest first.
    assert post(hooks, failed_2).json()["outcome"] == "payment failed"
    assert post(hooks, failed_1).json()["outcome"] == "ignored: older than the payment state"
    assert post(hooks, paid).json()["outcome"] == "paid"
    late = event(inv, "invoice.payment_failed", created=t + 5, attempt_count=1)
    assert post(hooks, late).json()["outcome"] == "ignored: already paid"
    with committed() as s:
        payment = s.get_one(tables.InvoicePayment, inv.id)
    assert (payment.status, payment.attempt_count) == ("succeeded", 3)
    assert invoice_row(committed, inv).status == "paid"


def test_changes_made_on_stripe_reach_operators(
    hooks: TestClient, committed: sessionmaker[Session]
) -> None:
    now = int(time.time())
    voided = on_stripe(committed)
    assert (
        post(hooks, event(voided, "invoice.voided", created=now, status="void")).status_code == 200
    )
    row = sync_row(committed, voided.id)
    assert (row.state, row.last_error_code) == ("failed", "REMOTE_VOIDED")
    assert "recreate: true" in (row.last_error_message or "")

    edited = on_stripe(committed)
    body = event(edited, "invoice.updated", created=now, total=edited.total_cents + 100)
    assert post(hooks, body).json()["outcome"] == "sync failed: MISMATCH"
    assert sync_row(committed, edited.id).last_error_code == "MISMATCH"
    same = event(edited, "invoice.updated", created=now, total=edited.total_cents)
    assert post(hooks, same).json()["outcome"] == "ok: matches"

    uncollectible = on_stripe(committed)
    body = event(uncollectible, "invoice.marked_uncollectible", created=now, status="uncollectible")
    assert post(hooks, body).json()["outcome"] == "uncollectible"
    assert invoice_row(committed, uncollectible).status == "uncollectible"


def test_mark_paid_tells_stripe_through_the_outbox(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:

    inv = finalized(committed, lines=2)
    assert run_once(rt, inv.id) == Outcome.SYNCED
    with committed() as s, s.begin():
        lifecycle.mark_paid(
            s,
            s.get_one(tables.Invoice, inv.id),
            now=datetime.now(UTC),
            paid_on=lifecycle.PaidOn.HERE,
        )
    assert run_once(rt, inv.id) == Outcome.SYNCED
    (remote,) = mock.remote_for(inv.public_id)
    assert remote["status"] == "paid" and remote["amount_paid_off_stripe"] == inv.total_cents
    assert history(committed, inv.id)[-1]["step"] == "pay"
    assert mock.stats()["requests"]["POST /v1/invoices/{id}/pay"] == {"200": 1}
    # Again: Stripe already has it paid, nothing more is sent.
    with committed() as s, s.begin():
        from models.sync_state import outbox

        outbox.request_resync(s, s.get_one(tables.Invoice, inv.id), now=datetime.now(UTC))
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert mock.stats()["requests"]["POST /v1/invoices/{id}/pay"] == {"200": 1}


def test_the_mock_signs_and_delivers_events_duplicated_and_late(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session], hooks: TestClient
) -> None:
    app = hooks.app
    with serving(app) as url:
        mock.faults(
            [],
            webhook_url=f"{url}/webhooks/stripe",
            webhook_secrets=[NEW],
            webhook_duplicate_probability=1.0,
            webhook_max_delay_seconds=0.5,
        )
        declined = finalized(committed, lines=1, slug="paying")
        paying = finalized(committed, lines=1, slug="paying")
        for inv in (declined, paying):
            assert run_once(rt, inv.id) == Outcome.SYNCED
        for inv, fail in ((declined, True), (paying, False)):
            (remote,) = mock.remote_for(inv.public_id)
            httpx.post(f"{mock.url}/_mock/invoices/{remote['id']}/pay", json={"fail": fail})
        flushed = httpx.post(f"{mock.url}/_mock/webhooks/flush", timeout=60).json()
        assert flushed["flushed"] and flushed["failed"] == 0 and flushed["duplicated"] > 0
    assert invoice_row(committed, paying).status == "paid"
    assert invoice_row(committed, declined).status == "open"
    with committed() as s:
        assert s.get_one(tables.InvoicePayment, declined.id).status == "failed"
        outcomes = [r[0] for r in s.execute(sa.text("SELECT outcome FROM stripe_events"))]
    assert "paid" in outcomes and "payment failed" in outcomes


# --- Hardening (issue 24): never a 500, a byte limit while reading, malformed events stored ---


def _raw_request(url: str, head: str) -> socket.socket:
    """A connection to the API with the request line and headers sent, the body not yet."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=10)
    sock.sendall(head.encode())
    return sock


def _status_line(sock: socket.socket) -> tuple[int, bytes]:
    answer = b""
    while b"\r\n\r\n" not in answer:
        data = sock.recv(65536)
        if not data:
            break
        answer += data
    return int(answer.split(b" ", 2)[1]), answer


def test_an_undecodable_body_is_a_400_with_a_code(
    hooks: TestClient, committed: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    header = sign("{}", [NEW], timestamp=int(time.time()))
    response = hooks.post(
        "/webhooks/stripe", content=b"\xff\xfe{}", headers={"Stripe-Signature": header}
    )
    assert response.status_code == 400, response.text
    assert response.json()["code"] == "SIGNATURE_CHECK_FAILED"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert events_stored(committed) == 0


def test_a_declared_length_over_the_limit_is_refused_before_the_body(hooks: TestClient) -> None:
    with serving(hooks.app) as url:
        sock = _raw_request(
            url,
            "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Stripe-Signature: t=1,v1=00\r\nContent-Length: 200000000\r\n\r\n",
        )
        with sock:
            status, answer = _status_line(sock)  # no byte of the body was sent
    assert status == 413 and b"BODY_TOO_LARGE" in answer


def test_a_chunked_body_is_refused_as_soon_as_it_passes_the_limit(hooks: TestClient) -> None:
    chunk = b"x" * 65536
    frame = b"%x\r\n%s\r\n" % (len(chunk), chunk)
    sent = 0
    with serving(hooks.app) as url:
        sock = _raw_request(
            url,
            "POST /webhooks/stripe HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            "Stripe-Signature: t=1,v1=00\r\nTransfer-Encoding: chunked\r\n\r\n",
        )
        with sock:
            try:
                while sent < 200 * 1024 * 1024:
                    readable, _, _ = select.select([sock], [], [], 0)
                    if readable:  # the answer came while we were still sending
                        break
                    sock.sendall(frame)
                    sent += len(chunk)
            except (BrokenPipeError, ConnectionResetError, TimeoutError):
                pass  # the server stopped reading: what we want
            status, answer = _status_line(sock)
    assert status == 413 and b"BODY_TOO_LARGE" in answer
    # Loopback socket buffers hold a few MB that were sent before the answer could arrive.
    assert sent < 32 * 1024 * 1024, f"{sent:,} bytes were taken before the refusal"


def test_a_signature_from_the_future_is_refused(
    hooks: TestClient, committed: sessionmaker[Session]
) -> None:
    inv = on_stripe(committed)
    body = event(inv, "invoice.paid", created=int(time.time()), status="paid")
    response = post(hooks, body, at=int(time.time()) + 86400)
    assert response.status_code == 400 and response.json()["code"] == "SIGNATURE_CHECK_FAILED"
    assert "future" in response.json()["message"]
    assert invoice_row(committed, inv).status == "open" and events_stored(committed) == 0


def _draft_known_to_stripe(factory: sessionmaker[Session]) -> tables.Invoice:
    with factory() as s, s.begin():
        inv = make_invoice(s, make_org(s, slug="drafty"), status="draft", lines=1)
    inv.stripe_invoice_id = f"in_{uuid.uuid4().hex[:20]}"  # not stored: found by metadata
    return inv


MALFORMED: dict[str, tuple[str, dict[str, Any], dict[str, Any]]] = {
    "created_1e15": ("invoice.paid", {"created": 10**15}, {}),
    "created_negative": ("invoice.paid", {"created": -(10**12)}, {}),
    "created_true": ("invoice.paid", {"created": True}, {}),
    "created_float": ("invoice.paid", {"created": 1e15}, {}),
    "metadata_string": ("invoice.paid", {}, {"id": "in_nobody", "metadata": "x"}),
    "paid_at_soon": ("invoice.paid", {}, {"status_transitions": {"paid_at": "soon"}}),
    "attempt_count_x": ("invoice.payment_failed", {}, {"attempt_count": "x"}),
    "total_abc": ("invoice.updated", {}, {"total": "abc"}),
    "object_not_a_dict": ("invoice.paid", {"data": {"object": "in_1"}}, {}),
    "not_an_invoice": ("invoice.paid", {}, {"object": "charge"}),
    "created_tomorrow": ("invoice.paid", {"created": int(time.time()) + 86400}, {}),
    "nul_in_text": ("invoice.paid", {}, {"description": "a\x00b"}),
    "lone_surrogate": ("invoice.paid", {}, {"description": "\ud800"}),
}


@pytest.mark.parametrize("case", [*MALFORMED, "draft", "unknown_invoice"])
def test_a_signed_event_we_cannot_use_is_stored_once_and_answered_200(
    hooks: TestClient, committed: sessionmaker[Session], case: str
) -> None:
    if case == "draft":
        inv, expected = _draft_known_to_stripe(committed), "not applicable to a DRAFT"
        body = event(inv, "invoice.paid", created=int(time.time()), status="paid")
    elif case == "unknown_invoice":
        inv, expected = on_stripe(committed), "unknown invoice"
        body = event(inv, "invoice.paid", created=int(time.time()), id="in_nobody", metadata={})
    else:
        inv, expected = on_stripe(committed), "malformed"
        kind, envelope, fields = MALFORMED[case]
        body = {**event(inv, kind, created=int(time.time()), **fields), **envelope}
    before = invoice_row(committed, inv).status
    for attempt in ("first", "again"):  # Stripe's retry of the same event changes nothing
        response = post(hooks, body)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert answer["verdict"] == (expected if attempt == "first" else "duplicate"), answer
    with committed() as s:
        stored = s.get_one(tables.StripeEvent, body["id"])
    assert stored.verdict == expected and stored.outcome
    assert events_stored(committed) == 1
    assert invoice_row(committed, inv).status == before


def test_operators_list_the_events_stored_as_malformed(
    hooks: TestClient,
    committed: sessionmaker[Session],
    database_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import cli
    from models.payments import events

    inv = on_stripe(committed)
    bad = event(inv, "invoice.payment_failed", created=int(time.time()), attempt_count="x")
    fine = event(inv, "invoice.payment_failed", created=int(time.time()), attempt_count=1)
    assert post(hooks, bad).json()["verdict"] == "malformed"
    assert post(hooks, fine).json()["verdict"] == "applied"
    assert cli.WEBHOOK_VERDICTS == events.VERDICTS  # the CLI's choices, spelled without imports
    monkeypatch.setenv("DATABASE_URL", database_url)
    assert cli.main(["webhooks", "list", "--outcome", "malformed"]) == 0
    out = capsys.readouterr().out
    assert bad["id"] in out and fine["id"] not in out and "attempt_count" in out
    assert cli.main(["webhooks", "list"]) == 0
    out = capsys.readouterr().out
    assert bad["id"] in out and fine["id"] in out
