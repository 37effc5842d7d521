"""Retry-safe writes: `idempotencyKey` on every mutation (gql/core/idempotency.py,
models/idempotency.py). The same key from the same token with the same input replays the first
outcome; other input answers IDEMPOTENCY_CONFLICT; keys live at least 24 hours; a retry after a
dropped connection creates nothing twice."""

from __future__ import annotations

import json
import socket
import threading
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from gql.app import create_app
from gql.schema import schema
from models import idempotency
from models.db import make_engine
from settings import Settings
from sync.runtime import Runtime
from tests.api_helpers import Api
from tests.factories import make_invoice, make_org, make_token
from tests.live_server import serve

CREATE = """mutation Create($input: CreateInvoiceInput!, $key: String) {
  createInvoice(input: $input, idempotencyKey: $key) {
    invoice { id status currency } userErrors { field code message } } }"""


@pytest.fixture
def world(committed: sessionmaker[Session]) -> dict[str, Any]:
    with committed() as s, s.begin():
        acme = make_org(s, slug="acme")
        return {
            "admin": make_token(s, None, admin=True),
            "admin2": make_token(s, None, admin=True),
            "member": make_token(s, acme),
            "draft": make_invoice(s, acme, lines=1).public_id,
        }


def _input(currency: str = "USD") -> dict[str, Any]:
    return {
        "organizationSlug": "acme",
        "currency": currency,
        "periodStart": "2026-10-01",
        "periodEnd": "2026-11-01",
    }


def _drafts(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(
            s.execute(
                sa.text("SELECT count(*) FROM invoices WHERE period_start = '2026-10-01'")
            ).scalar_one()
        )


def _create(api: Api, token: str, key: str | None, currency: str = "USD") -> dict[str, Any]:
    body = api.gql(CREATE, token, input=_input(currency), key=key)
    assert "errors" not in body, body
    result: dict[str, Any] = body["data"]["createInvoice"]
    return result


def test_every_mutation_takes_an_idempotency_key() -> None:
    mutation_type = schema.schema_converter.type_map["Mutation"].definition
    fields = {f.graphql_name or f.python_name: f for f in mutation_type.fields}  # type: ignore[union-attr]
    assert len(fields) >= 10
    for name, f in fields.items():
        args = {a.graphql_name or a.python_name for a in f.arguments}
        assert "idempotencyKey" in args, name


def test_the_same_key_and_input_replays_the_first_answer(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    first = _create(api, world["admin"], "k-1")
    assert first["userErrors"] == [] and first["invoice"]["status"] == "DRAFT"
    again = _create(api, world["admin"], "k-1")
    assert again == first
    assert _drafts(committed) == 1


def test_without_a_key_a_retry_writes_twice(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    _create(api, world["admin"], None)
    _create(api, world["admin"], None)
    assert _drafts(committed) == 2


def test_the_same_key_with_other_input_is_a_conflict_and_writes_nothing(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    _create(api, world["admin"], "k-2")
    other = _create(api, world["admin"], "k-2", currency="EUR")
    assert other["invoice"] is None
    assert other["userErrors"] == [
        {
            "field": ["idempotencyKey"],
            "code": "IDEMPOTENCY_CONFLICT",
            "message": other["userErrors"][0]["message"],
        }
    ]
    assert "createInvoice" in other["userErrors"][0]["message"]
    assert _drafts(committed) == 1


def test_the_same_key_on_another_mutation_is_a_conflict(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    _create(api, world["admin"], "k-3")
    body = api.data(
        """mutation($key: String) { retryFailedSyncs(input: {}, idempotencyKey: $key) {
             count userErrors { code field } } }""",
        world["admin"],
        key="k-3",
    )
    assert body["retryFailedSyncs"]["userErrors"] == [
        {"code": "IDEMPOTENCY_CONFLICT", "field": ["idempotencyKey"]}
    ]


def test_keys_belong_to_their_token(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    a = _create(api, world["admin"], "shared")
    b = _create(api, world["admin2"], "shared")
    assert a["invoice"]["id"] != b["invoice"]["id"]
    assert _drafts(committed) == 2


def test_a_failed_mutation_records_no_key_so_a_retry_runs_again(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    bad = api.data(
        """mutation($key: String) { createInvoice(idempotencyKey: $key, input: {
             organizationSlug: "nobody", currency: "USD", periodStart: "2026-10-01",
             periodEnd: "2026-11-01"}) { invoice { id } userErrors { code } } }""",
        world["admin"],
        key="k-4",
    )
    assert bad["createInvoice"]["userErrors"] == [{"code": "NOT_FOUND"}]
    with committed() as s:
        assert s.execute(sa.text("SELECT count(*) FROM idempotency_keys")).scalar_one() == 0


def test_a_replay_shows_the_record_as_it_is_now(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    finalize = """mutation($id: ID!, $key: String) {
      finalizeInvoice(input: {invoiceId: $id}, idempotencyKey: $key) {
        invoice { id status number } userErrors { code } } }"""
    first = api.data(finalize, world["admin"], id=world["draft"], key="fin")["finalizeInvoice"]
    assert first["invoice"]["status"] == "OPEN" and first["userErrors"] == []
    enqueued = len(api.enqueued)
    # Without the key, a second finalize is an illegal transition; with it, the same answer.
    again = api.data(finalize, world["admin"], id=world["draft"], key="fin")["finalizeInvoice"]
    assert again == first
    assert len(api.enqueued) == enqueued  # a replay does nothing, not even an enqueue


@pytest.mark.parametrize(
    "key", ["", "x" * 256, "tab\there", "new\nline"], ids=["empty", "long", "tab", "newline"]
)
def test_a_bad_key_is_a_user_error(api: Api, world: dict[str, Any], key: str) -> None:
    result = _create(api, world["admin"], key)
    assert result["invoice"] is None
    assert [(e["field"], e["code"]) for e in result["userErrors"]] == [
        (["idempotencyKey"], "INVALID_VALUE")
    ]


def test_concurrent_requests_with_one_key_create_one_draft(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    answers: list[dict[str, Any]] = []
    barrier = threading.Barrier(4)

    def go() -> None:
        barrier.wait()
        answers.append(_create(api, world["admin"], "race"))

    threads = [threading.Thread(target=go) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(answers) == 4
    assert {a["invoice"]["id"] for a in answers} == {answers[0]["invoice"]["id"]}
    assert _drafts(committed) == 1


def test_keys_are_kept_a_day_and_purged_after(
    api: Api, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    _create(api, world["admin"], "old")
    now = datetime.now(UTC)
    with committed() as s, s.begin():
        assert idempotency.purge(s, now=now + timedelta(hours=23), keep=timedelta(hours=24)) == 0
    assert _create(api, world["admin"], "old")["invoice"] is not None
    assert _drafts(committed) == 1
    with committed() as s, s.begin():
        assert idempotency.purge(s, now=now + timedelta(hours=25), keep=timedelta(hours=24)) == 1
    _create(api, world["admin"], "old")
    assert _drafts(committed) == 2  # the key is gone: the same request runs again


def _post_and_hang_up(base: str, token: str, key: str) -> None:
    """Send the whole request, then close the socket before reading a byte of the answer:
    the client saw a dropped connection and does not know whether the write happened."""
    parts = urlsplit(base)
    body = json.dumps({"query": CREATE, "variables": {"input": _input(), "key": key}}).encode()
    head = (
        f"POST /graphql HTTP/1.1\r\nHost: {parts.netloc}\r\nContent-Type: application/json\r\n"
        f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    with socket.create_connection((parts.hostname, parts.port)) as sock:
        sock.sendall(head + body)
        sock.shutdown(socket.SHUT_WR)


def test_a_client_retrying_after_a_dropped_connection_gets_one_draft(
    database_url: str, redis_url: str, world: dict[str, Any], committed: sessionmaker[Session]
) -> None:
    settings = Settings(database_url=database_url, redis_url=redis_url)
    app = create_app(
        settings,
        engine=make_engine(database_url, pool_size=2),
        redis=redis.Redis.from_url(redis_url, socket_timeout=1),
        enqueue_sync=lambda _: None,
    )
    with serve(app) as base:
        _post_and_hang_up(base, world["admin"], "dropped")
        # The server finishes the write on its own: wait for it, as a client's retry would
        # arrive after its timeout. Then the client retries with the same key.
        for _ in range(1000):
            if _drafts(committed) == 1:
                break
            threading.Event().wait(0.01)
        assert _drafts(committed) == 1
        retry = httpx.post(
            f"{base}/graphql",
            json={"query": CREATE, "variables": {"input": _input(), "key": "dropped"}},
            headers={"Authorization": f"Bearer {world['admin']}"},
            timeout=10,
        ).json()["data"]["createInvoice"]
        assert retry["userErrors"] == [] and retry["invoice"]["status"] == "DRAFT"
        with committed() as s:
            (public_id,) = s.execute(
                sa.text("SELECT public_id FROM invoices WHERE period_start = '2026-10-01'")
            ).one()
        assert retry["invoice"]["id"] == public_id
        assert _drafts(committed) == 1


def _token_id(factory: sessionmaker[Session]) -> int:
    with factory() as s:
        return int(s.execute(sa.text("SELECT min(id) FROM api_tokens")).scalar_one())


def _wait_until_blocked(factory: sessionmaker[Session]) -> None:
    """Until another backend of this database waits on a row lock (the second claim)."""
    for _ in range(1000):
        with factory() as s:
            waiting = s.execute(
                sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                    "AND datname = current_database()"
                )
            ).scalar_one()
        if waiting:
            return
        threading.Event().wait(0.01)
    raise AssertionError("the second claim never waited")


@pytest.mark.parametrize("first_commits", [True, False], ids=["commits", "rolls-back"])
def test_a_second_claim_waits_for_the_first_then_loses_or_runs(
    world: dict[str, Any], committed: sessionmaker[Session], first_commits: bool
) -> None:
    request = idempotency.Request(_token_id(committed), "k", "createInvoice", "f" * 64)
    first = committed()
    first.begin()
    assert idempotency.claim(first, request)
    second: list[bool] = []

    def claim_again() -> None:
        with committed() as s, s.begin():
            second.append(idempotency.claim(s, request))

    thread = threading.Thread(target=claim_again)
    thread.start()
    _wait_until_blocked(committed)
    assert second == []  # still waiting on the first request's uncommitted row
    if first_commits:
        first.commit()
    else:
        first.rollback()
    first.close()
    thread.join(timeout=10)
    assert second == [not first_commits]


def test_a_request_that_lost_the_race_for_its_key_replays_the_winner(
    api: Api,
    world: dict[str, Any],
    committed: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    first = _create(api, world["admin"], "raced")
    real_find = idempotency.find
    reads: list[object] = []

    def find_late(*args: Any) -> idempotency.Stored | None:
        # The first read misses the winner's row, as a read just before its commit would.
        reads.append(args)
        return None if len(reads) == 1 else real_find(*args)

    monkeypatch.setattr("gql.core.idempotency.idempotency.find", find_late)
    again = _create(api, world["admin"], "raced")
    assert len(reads) == 2  # missed, lost the claim, read again
    assert again == first
    assert _drafts(committed) == 1


NOW = datetime.now(UTC).replace(microsecond=0)
REPLAYED = {
    "createOrganization": (
        'createOrganization(input: {slug: "newco", name: "New Co", billingEmail: "a@new.co"}, '
        "idempotencyKey: $key) { organization { slug name } userErrors { code } }"
    ),
    "setPrice": (
        'setPrice(input: {product: "egress", unit: "GB", currency: "USD", unitPrice: "2", '
        'effectiveFrom: "2020-01-01T00:00:00Z"}, idempotencyKey: $key) '
        "{ price { id product unitPrice } userErrors { code } }"
    ),
    "setSpendAlert": (
        'setSpendAlert(input: {organizationSlug: "acme", threshold: {cents: "1000", '
        'currency: "USD"}}, idempotencyKey: $key) '
        "{ spendAlert { id threshold { cents } } userErrors { code } }"
    ),
    "recordUsage": (
        'recordUsage(input: {events: [{id: "e1", organizationSlug: "acme", product: "egress", '
        f'quantity: "3", occurredAt: "{NOW.isoformat()}"}}]}}, idempotencyKey: $key) '
        "{ accepted duplicates userErrors { code } }"
    ),
}


@pytest.mark.parametrize("name", sorted(REPLAYED))
def test_every_kind_of_payload_replays(api: Api, world: dict[str, Any], name: str) -> None:
    if name == "recordUsage":
        api.data(f"mutation($key: String) {{ {REPLAYED['setPrice']} }}", world["admin"], key=None)
    document = f"mutation($key: String) {{ {REPLAYED[name]} }}"
    first = api.data(document, world["admin"], key=f"{name}-1")[name]
    assert first["userErrors"] == [], first
    again = api.data(document, world["admin"], key=f"{name}-1")[name]
    assert again == first
    if name == "recordUsage":
        # A replay, not a second ingest: the second ingest would answer duplicates: 1.
        assert again["accepted"] == 1 and again["duplicates"] == 0


def test_beat_purges_keys_older_than_a_day(
    world: dict[str, Any], committed: sessionmaker[Session], rt: Runtime
) -> None:
    from sync.celery_app import celery_settings
    from sync.housekeeping import purge_idempotency_keys

    token_id = _token_id(committed)
    with committed() as s, s.begin():
        for key, age in (("fresh", timedelta(hours=23)), ("stale", timedelta(hours=25))):
            s.execute(
                sa.text(
                    "INSERT INTO idempotency_keys (token_id, key, operation, fingerprint, "
                    "outcome, created_at) VALUES (:t, :k, 'createInvoice', :f, '{}', :at)"
                ),
                {"t": token_id, "k": key, "f": "0" * 64, "at": datetime.now(UTC) - age},
            )
    assert purge_idempotency_keys() == 1
    with committed() as s:
        assert s.execute(sa.text("SELECT key FROM idempotency_keys")).scalars().all() == ["fresh"]
    schedule = celery_settings(rt.config)["beat_schedule"]
    assert schedule["purge-idempotency-keys"]["task"] == "sync.purge_idempotency_keys"


def test_keys_are_kept_at_least_a_day() -> None:
    assert Settings().idempotency_keep_seconds == 86400
    assert Settings.model_validate({"API_IDEMPOTENCY_KEEP": "48h"}).idempotency_keep_seconds == (
        172800
    )
    with pytest.raises(ValueError, match="API_IDEMPOTENCY_KEEP"):
        Settings.model_validate({"API_IDEMPOTENCY_KEEP": "1h"})
