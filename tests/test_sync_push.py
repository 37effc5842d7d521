"""The sync against the mock Stripe over HTTP: the happy path's call count, each error class,
lost responses with and without idempotency-key expiry, grouping over Stripe's 250-line cap,
concurrency, and the circuit breaker."""

from __future__ import annotations

import threading
import time
from math import ceil
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import invoices, outbox, tables
from sync.push import Pusher
from tests.factories import NOW, SHARDS, make_invoice, make_org, usage_line
from tests.sync_helpers import Mock


def finalized(
    factory: sessionmaker[Session], *, lines: int = 3, slug: str = "stripe-co"
) -> tables.Invoice:
    with factory() as s, s.begin():
        org = s.execute(
            sa.select(tables.Organization).where(tables.Organization.slug == slug)
        ).scalar_one_or_none()  # type: ignore[arg-type]
        org = org or make_org(s, slug=slug)
        return make_invoice(s, org, status="open", lines=lines)


def sync_row(factory: sessionmaker[Session], invoice_id: int | None) -> tables.InvoiceSync:
    with factory() as s:
        row = outbox.get(s, invoice_id or 0)
        assert row is not None
        return row


def remote_for(mock: Mock, public_id: str) -> list[dict[str, Any]]:
    return [i for i in mock.invoices() if i["metadata"].get("invoice_id") == public_id]


def assert_exactly_once(mock: Mock, inv: tables.Invoice, *, lines: int) -> dict[str, Any]:
    remote = remote_for(mock, inv.public_id)
    assert len(remote) == 1, f"{len(remote)} Stripe invoices for {inv.public_id}"
    r = remote[0]
    assert r["status"] == "open" and r["total"] == inv.total_cents
    assert r["lines"]["total_count"] == lines == len(r["lines"]["data"])
    return r


def test_happy_path_costs_two_calls_plus_one_per_chunk(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    first = finalized(committed, lines=3)
    assert pusher.run(first.id or 0, owner="w1") == "synced"
    remote = assert_exactly_once(mock, first, lines=3)
    assert {line["metadata"]["line_item_id"] for line in remote["lines"]["data"]}
    assert remote["lines"]["data"][0]["amount"] == 250
    row = sync_row(committed, first.id)
    assert (row.state, row.attempts, row.last_error_class) == ("synced", 1, None)
    before = mock.total_requests()
    second = finalized(committed, lines=120)  # same organization: its customer is known now
    assert pusher.run(second.id or 0, owner="w1") == "synced"
    assert mock.total_requests() - before == 2 + ceil(120 / 50)
    assert_exactly_once(mock, second, lines=120)
    with committed() as s:
        stored = s.get_one(tables.Invoice, second.id).stripe_invoice_id
        attempts = s.execute(
            sa.text("SELECT step, outcome, calls FROM sync_attempts WHERE invoice_id = :i"),
            {"i": second.id},
        ).all()
    assert stored == remote_for(mock, second.public_id)[0]["id"]
    assert [tuple(a) for a in attempts] == [("verify", "ok", 5)]


def test_server_errors_are_retried_with_state_shown(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "count": 1}])
    assert pusher.run(inv.id or 0, owner="w1") == "retry"
    row = sync_row(committed, inv.id)
    assert (
        row.state == "retrying"
        and row.next_attempt_at is not None
        and row.last_error_http_status == 500
    )
    assert row.last_error_class == "APIError" and row.last_error_request_id
    assert pusher.run(inv.id or 0, owner="w1") == "synced"
    assert_exactly_once(mock, inv, lines=3)


def test_rate_limit_honours_retry_after(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    mock.faults(
        [{"endpoint": "POST /v1/invoices", "fault": "rate_limit", "count": 1, "retry_after": 7}]
    )
    assert pusher.run(inv.id or 0, owner="w1") == "retry"
    row = sync_row(committed, inv.id)
    assert row.last_error_http_status == 429 and row.next_attempt_at is not None
    with committed() as s:
        wait = s.execute(
            sa.text(
                "SELECT extract(epoch FROM next_attempt_at - now()) FROM invoice_sync WHERE invoice_id = :i"
            ),
            {"i": inv.id},
        ).scalar_one()
    assert wait > 6


def test_invalid_requests_fail_at_once_with_stripes_error(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    with committed() as s, s.begin():
        s.execute(
            sa.text("UPDATE organizations SET stripe_customer_id = 'cus_gone' WHERE id = :o"),
            {"o": inv.organization_id},
        )
    assert pusher.run(inv.id or 0, owner="w1") == "failed"
    row = sync_row(committed, inv.id)
    assert (row.state, row.attempts, row.last_error_class, row.last_error_http_status) == (
        "failed",
        1,
        "InvalidRequestError",
        400,  # Stripe answers a bad reference in the parameters with 400 resource_missing
    )
    assert row.last_error_code == "resource_missing" and "cus_gone" in (
        row.last_error_message or ""
    )
    assert remote_for(mock, inv.public_id) == []


def test_retries_stop_at_the_limit(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "probability": 1.0}])
    outcomes = [pusher.run(inv.id or 0, owner="w1") for _ in range(pusher.config.max_attempts)]
    assert outcomes == ["retry"] * (pusher.config.max_attempts - 1) + ["failed"]
    assert sync_row(committed, inv.id).state == "failed"
    assert pusher.run(inv.id or 0, owner="w1") == "not_due"


def _lost_response(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session], endpoint: str, *, expire: bool
) -> None:
    inv = finalized(committed, lines=60)
    mock.faults(
        [{"endpoint": endpoint, "fault": "lost_response", "count": 1}],
        idempotency_ttl_seconds=0.5 if expire else 86400,
    )
    assert pusher.run(inv.id or 0, owner="w1") == "retry"
    assert sync_row(committed, inv.id).last_error_class == "APIConnectionError"
    if expire:
        time.sleep(
            0.6
        )  # the idempotency key is gone: only the metadata lookup prevents a duplicate
    assert pusher.run(inv.id or 0, owner="w1") == "synced"
    assert_exactly_once(mock, inv, lines=60)


def test_lost_response_on_create(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(pusher, mock, committed, "POST /v1/invoices", expire=False)


def test_lost_response_on_create_after_key_expiry(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(pusher, mock, committed, "POST /v1/invoices", expire=True)


def test_lost_response_on_add_lines(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(pusher, mock, committed, "POST /v1/invoices/{id}/add_lines", expire=False)


def test_lost_response_on_add_lines_after_key_expiry(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(pusher, mock, committed, "POST /v1/invoices/{id}/add_lines", expire=True)


def test_lost_response_on_finalize(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(pusher, mock, committed, "POST /v1/invoices/{id}/finalize", expire=False)


def test_lost_response_on_finalize_after_key_expiry(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(pusher, mock, committed, "POST /v1/invoices/{id}/finalize", expire=True)


def test_over_250_lines_are_grouped_with_the_exact_total(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="bigco")
        inv = make_invoice(s, org, lines=0)
        regions = ["ams", "iad", "sin", "syd", "gru"]
        products = ["machines-shared-cpu", "egress", "volume-storage"]
        invoices.add_lines(
            s,
            inv,
            [
                usage_line(
                    quantity=str(1000 + i),
                    unit_price="0.0000268" if i % 3 else "2.5",
                    region=regions[i % 5],
                    product=products[i % 3],
                )
                for i in range(412)
            ],
            now=NOW,
        )
        inv = invoices.finalize(s, inv, now=NOW, rollup_shards=SHARDS)
    assert pusher.run(inv.id or 0, owner="w1") == "synced"
    remote = remote_for(mock, inv.public_id)
    assert len(remote) == 1 and remote[0]["total"] == inv.total_cents
    lines = remote[0]["lines"]["data"]
    assert len(lines) == 15 and all("group" in line["metadata"] for line in lines)
    assert sum(line["amount"] for line in lines) == inv.total_cents
    assert any(
        line["description"].endswith("lines") and ", ams, " in line["description"] for line in lines
    )


def test_two_workers_and_two_resyncs_make_one_remote_invoice(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed, lines=80)
    mock.faults(
        [
            {
                "endpoint": "POST /v1/invoices/{id}/add_lines",
                "fault": "slow",
                "seconds": 0.3,
                "probability": 1.0,
            }
        ]
    )
    outcomes: list[str] = []

    def work(owner: str) -> None:
        outcomes.append(pusher.run(inv.id or 0, owner=owner))

    def resync() -> None:
        with committed() as s, s.begin():
            outbox.request_resync(s, s.get_one(tables.Invoice, inv.id), now=NOW)

    threads = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)] + [
        threading.Thread(target=resync) for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert outcomes.count("synced") + outcomes.count("not_due") == 2 and "synced" in outcomes
    mock.faults([])
    for _ in range(3):  # the resyncs asked for another pass (re-verify): let it run
        pusher.run(inv.id or 0, owner="w3")
    assert sync_row(committed, inv.id).state == "synced"
    assert_exactly_once(mock, inv, lines=80)


def test_resync_of_a_synced_invoice_reverifies_without_duplicates(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    assert pusher.run(inv.id or 0, owner="w1") == "synced"
    with committed() as s, s.begin():
        outbox.request_resync(s, s.get_one(tables.Invoice, inv.id), now=NOW)
    assert pusher.run(inv.id or 0, owner="w1") == "synced"
    assert_exactly_once(mock, inv, lines=3)
    with committed() as s:
        line_ids = s.execute(
            sa.text("SELECT count(stripe_line_id) FROM invoice_items WHERE invoice_id = :i"),
            {"i": inv.id},
        ).scalar_one()
    assert line_ids == 3  # the re-verify listed the lines and recorded Stripe's ids


def test_void_of_a_synced_invoice_voids_it_on_stripe(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    assert pusher.run(inv.id or 0, owner="w1") == "synced"
    with committed() as s, s.begin():
        invoices.void(s, s.get_one(tables.Invoice, inv.id), now=NOW, rollup_shards=SHARDS)
    assert pusher.run(inv.id or 0, owner="w1") == "synced"
    assert [r["status"] for r in remote_for(mock, inv.public_id)] == ["void"]


def test_auth_error_opens_the_breaker_and_pauses_everything(
    pusher: Pusher, mock: Mock, committed: sessionmaker[Session]
) -> None:
    a, b = finalized(committed), finalized(committed)
    mock.faults([{"endpoint": "*", "fault": "auth_error", "probability": 1.0}])
    assert pusher.run(a.id or 0, owner="w1") == "paused"
    row = sync_row(committed, a.id)
    assert (row.state, row.attempts, row.last_error_class) == ("retrying", 0, "AuthenticationError")
    calls = mock.total_requests()
    assert [pusher.run(i.id or 0, owner="w1") for i in (a, b)] == ["paused", "paused"]
    assert mock.total_requests() == calls, "no call may reach Stripe while the breaker is open"
    mock.faults([])
    time.sleep(1.1)  # the breaker's open period; then one probe goes through and closes it
    assert [pusher.run(i.id or 0, owner="w1") for i in (a, b)] == ["synced", "synced"]
    assert not pusher.gateway.breaker.is_open()
