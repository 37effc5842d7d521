"""The sync against the mock Stripe over HTTP: the happy path's call count, each error class
(state and error in invoice_sync and sync_attempts), lost responses with and without
idempotency-key expiry, grouping over Stripe's 250-line cap, voids and resyncs."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from math import ceil

import httpx
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import tables
from models.invoices import lifecycle
from models.sync_state import outbox
from sync import push, runtime
from sync.attempt import Outcome
from sync.grouping import remote_lines
from sync.runtime import Runtime
from tests.factories import NOW, SHARDS, make_invoice, make_org, usage_line
from tests.sync_helpers import (
    Mock,
    assert_exactly_once,
    drive,
    finalized,
    history,
    run_once,
    sync_row,
)


def test_happy_path_costs_two_calls_plus_one_per_chunk(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    first = finalized(committed, lines=3)
    assert run_once(rt, first.id) == Outcome.SYNCED
    remote = assert_exactly_once(mock, first, lines=3)
    assert remote["lines"]["data"][0]["amount"] == 250
    assert remote["currency"] == "usd" and remote["metadata"]["invoice_number"] == first.number
    row = sync_row(committed, first.id)
    assert (row.state, row.attempts, row.last_error_class, row.synced_at is not None) == (
        "synced",
        1,
        None,
        True,
    )
    # The organization's first invoice also found-or-created its customer (2 more calls).
    assert history(committed, first.id)[0]["calls"] == 2 + 1 + 2

    before = mock.total_requests()
    second = finalized(committed, lines=120)  # same organization: its customer is known now
    assert run_once(rt, second.id) == Outcome.SYNCED
    # Create, add_lines per chunk, finalize, then the verify pages the lines (Stripe embeds 10
    # and declares no count): 2 + ceil(120 / 50) + ceil(120 / 100).
    assert mock.total_requests() - before == 2 + ceil(120 / 50) + ceil(120 / 100)
    remote = assert_exactly_once(mock, second, lines=120)
    sent = {line["metadata"]["line_item_id"]: line for line in remote["lines"]["data"]}
    with committed() as s:
        items = s.exec(
            sa.select(tables.InvoiceItem).where(tables.InvoiceItem.invoice_id == second.id)  # type: ignore[arg-type]
        ).scalars()
        for i in items:
            line = sent[i.public_id]
            assert line["amount"] == i.amount_cents and line["description"] == i.description
            # No period of its own: the invoice's, as unix seconds at 00:00 UTC.
            assert line["period"] == {"start": 1769904000, "end": 1772323200}
        stored = s.get_one(tables.Invoice, second.id).stripe_invoice_id
    assert stored == remote["id"]
    (only,) = history(committed, second.id)
    assert (only["step"], only["outcome"], only["calls"]) == ("verify", "ok", 7)


def test_server_errors_are_retried_with_the_state_shown(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "count": 1}])
    assert run_once(rt, inv.id) == Outcome.RETRY
    row = sync_row(committed, inv.id)
    assert (row.state, row.last_error_class, row.last_error_http_status) == (
        "retrying",
        "APIError",
        500,
    )
    assert row.next_attempt_at is not None and row.last_error_request_id
    with committed() as s, s.begin():  # as if the backoff were long: not due before its time
        s.execute(sa.text("UPDATE invoice_sync SET next_attempt_at = now() + interval '1 hour'"))
    assert run_once(rt, inv.id) == Outcome.NOT_DUE
    with committed() as s, s.begin():
        s.execute(sa.text("UPDATE invoice_sync SET next_attempt_at = now()"))
    assert drive(rt, inv.id) == [Outcome.SYNCED]
    assert_exactly_once(mock, inv, lines=3)
    steps = [(h["step"], h["outcome"], h["http_status"]) for h in history(committed, inv.id)]
    assert steps == [("create", "retry", 500), ("verify", "ok", None)]


def test_a_long_backoff_is_driven_not_waited_for(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    """Minutes of backoff cost the test nothing: time moves to the due time, and the delay the
    seeded jitter chose is checked against its cap."""
    patient = replace(
        rt, config=replace(rt.config, backoff_base_seconds=300.0, backoff_cap_seconds=600.0)
    )
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "count": 2}])
    assert drive(patient, inv.id) == [Outcome.RETRY, Outcome.RETRY, Outcome.SYNCED]
    assert_exactly_once(mock, inv, lines=3)


def test_rate_limits_honour_retry_after(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    mock.faults(
        [{"endpoint": "POST /v1/invoices", "fault": "rate_limit", "count": 1, "retry_after": 7}]
    )
    assert run_once(rt, inv.id) == Outcome.RETRY
    row = sync_row(committed, inv.id)
    assert (row.last_error_class, row.last_error_http_status) == ("RateLimitError", 429)
    with committed() as s:
        wait = s.execute(
            sa.text(
                "SELECT extract(epoch FROM next_attempt_at - now()) FROM invoice_sync"
                " WHERE invoice_id = :i"
            ),
            {"i": inv.id},
        ).scalar_one()
    assert 6 < wait <= 7  # Stripe's Retry-After, although our backoff is 50 ms at most


def test_timeouts_are_retried_and_the_request_is_not_doubled(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    # The mock holds the request past a 0.5 s read timeout, then drops it.
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "timeout", "count": 1, "seconds": 1}])
    impatient = runtime.build(replace(rt.config, stripe_timeout_seconds=0.5))
    assert run_once(impatient, inv.id) == Outcome.RETRY
    row = sync_row(committed, inv.id)
    assert (row.last_error_class, row.last_error_code) == ("APIConnectionError", "timeout")
    time.sleep(0.6)  # let the mock finish holding the dropped request
    assert drive(rt, inv.id) == [Outcome.SYNCED]
    assert_exactly_once(mock, inv, lines=3)


def test_invalid_requests_fail_at_once_with_stripes_error(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    # A currency the account cannot use: Stripe refuses the create with 400 and a code.
    mock.faults([], unsupported_currencies=["usd"])
    assert run_once(rt, inv.id) == Outcome.FAILED
    row = sync_row(committed, inv.id)
    assert (row.state, row.attempts, row.last_error_class, row.last_error_http_status) == (
        "failed",
        1,
        "InvalidRequestError",
        400,
    )
    assert row.last_error_code == "parameter_invalid" and "usd" in (row.last_error_message or "")
    assert row.last_error_request_id and row.next_attempt_at is None
    assert mock.remote_for(inv.public_id) == []
    assert run_once(rt, inv.id) == Outcome.NOT_DUE  # FAILED waits for a person


def test_an_idempotency_error_fails_at_once(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    # Someone used our create key with other parameters: Stripe refuses to replay it.
    customer = httpx.post(
        f"{mock.url}/v1/customers",
        data={"name": "x"},
        headers={"Authorization": "Bearer sk_test_other"},
    ).json()["id"]
    httpx.post(
        f"{mock.url}/v1/invoices",
        data={"customer": customer, "metadata[invoice_id]": "someone-else"},
        headers={
            "Authorization": "Bearer sk_test_other",
            "Idempotency-Key": f"invoice:{inv.public_id}:create",
        },
    ).raise_for_status()
    assert run_once(rt, inv.id) == Outcome.FAILED
    row = sync_row(committed, inv.id)
    assert (row.last_error_class, row.last_error_code, row.last_error_http_status) == (
        "IdempotencyError",
        "idempotency_error",
        400,
    )
    assert mock.remote_for(inv.public_id) == []


def test_retries_stop_at_the_limit(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "probability": 1.0}])
    outcomes = drive(rt, inv.id)
    assert outcomes == [Outcome.RETRY] * (rt.config.max_attempts - 1) + [Outcome.FAILED]
    row = sync_row(committed, inv.id)
    assert (row.state, row.attempts, row.last_error_http_status) == (
        "failed",
        rt.config.max_attempts,
        500,
    )
    assert len(history(committed, inv.id)) == rt.config.max_attempts


def _lost_response(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session], endpoint: str, *, expire: bool
) -> None:
    inv = finalized(committed, lines=60)
    mock.faults(
        [{"endpoint": endpoint, "fault": "lost_response", "count": 1}],
        idempotency_ttl_seconds=1 if expire else 86400,
    )
    assert run_once(rt, inv.id) == Outcome.RETRY
    assert sync_row(committed, inv.id).last_error_class == "APIConnectionError"
    if expire:
        time.sleep(1.1)  # the key is gone: only the lookup by metadata prevents a duplicate
    assert drive(rt, inv.id) == [Outcome.SYNCED]
    assert_exactly_once(mock, inv, lines=60)
    assert sync_row(committed, inv.id).state == "synced"


def test_lost_response_on_create(rt: Runtime, mock: Mock, committed: sessionmaker[Session]) -> None:
    _lost_response(rt, mock, committed, "POST /v1/invoices", expire=False)


def test_lost_response_on_create_after_key_expiry(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(rt, mock, committed, "POST /v1/invoices", expire=True)


def test_lost_response_on_add_lines(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(rt, mock, committed, "POST /v1/invoices/{id}/add_lines", expire=False)


def test_lost_response_on_add_lines_after_key_expiry(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(rt, mock, committed, "POST /v1/invoices/{id}/add_lines", expire=True)


def test_lost_response_on_finalize(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(rt, mock, committed, "POST /v1/invoices/{id}/finalize", expire=False)


def test_lost_response_on_finalize_after_key_expiry(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    _lost_response(rt, mock, committed, "POST /v1/invoices/{id}/finalize", expire=True)


def test_a_reset_of_attempts_never_skips_the_lookup(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    """A create whose answer was lost, then a resync that resets the attempts, after the key
    expired: the attempt counter is 1 again, but the lookup must still happen."""
    inv = finalized(committed)
    mock.faults(
        [{"endpoint": "POST /v1/invoices", "fault": "lost_response", "count": 1}],
        idempotency_ttl_seconds=0.5,
    )
    assert run_once(rt, inv.id) == Outcome.RETRY
    with committed() as s, s.begin():
        outbox.request_resync(s, s.get_one(tables.Invoice, inv.id), now=NOW)
    time.sleep(0.6)
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert sync_row(committed, inv.id).attempts == 1
    assert_exactly_once(mock, inv, lines=3)


def test_over_250_lines_are_grouped_with_the_exact_total(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        org = make_org(s, slug="bigco")
        inv = make_invoice(s, org, lines=0)
        regions = ["ams", "iad", "sin", "syd", "gru"]
        products = ["machines-shared-cpu", "egress", "volume-storage"]
        lifecycle.add_lines(
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
        inv = lifecycle.finalize(s, inv, now=NOW, rollup_shards=SHARDS)
    mock.faults(
        [{"endpoint": "POST /v1/invoices/{id}/add_lines", "fault": "error_500", "count": 1}]
    )
    assert drive(rt, inv.id) == [Outcome.RETRY, Outcome.SYNCED]
    (remote,) = mock.remote_for(inv.public_id)
    assert remote["total"] == inv.total_cents and remote["status"] == "open"
    lines = remote["lines"]["data"]
    assert len(lines) == 15 and all("group" in line["metadata"] for line in lines)
    assert sum(line["amount"] for line in lines) == inv.total_cents
    assert "Egress, ams, 27 lines" in {line["description"] for line in lines}
    with committed() as s:
        ids = s.execute(
            sa.text("SELECT count(stripe_line_id) FROM invoice_items WHERE invoice_id = :i"),
            {"i": inv.id},
        ).scalar_one()
    assert ids == 0  # a grouped line stands for many items: no item gets its id


def test_void_of_a_synced_invoice_voids_it_on_stripe(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    assert run_once(rt, inv.id) == Outcome.SYNCED
    with committed() as s, s.begin():
        lifecycle.void(s, s.get_one(tables.Invoice, inv.id), now=NOW, rollup_shards=SHARDS)
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert [r["status"] for r in mock.remote_for(inv.public_id)] == ["void"]


def test_void_of_an_invoice_that_never_reached_stripe_needs_nothing_remote(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    with committed() as s, s.begin():
        lifecycle.void(s, s.get_one(tables.Invoice, inv.id), now=NOW, rollup_shards=SHARDS)
    before = mock.total_requests()
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert mock.total_requests() == before  # not even a customer
    assert mock.invoices() == []


def test_void_of_a_half_synced_draft_completes_finalizes_and_voids_it(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed, lines=60)
    mock.faults(
        [{"endpoint": "POST /v1/invoices/{id}/add_lines", "fault": "error_500", "count": 1}]
    )
    assert run_once(rt, inv.id) == Outcome.RETRY  # a draft with its first chunk on Stripe
    with committed() as s, s.begin():
        lifecycle.void(s, s.get_one(tables.Invoice, inv.id), now=NOW, rollup_shards=SHARDS)
    assert drive(rt, inv.id) == [Outcome.SYNCED]
    (remote,) = mock.remote_for(inv.public_id)
    assert remote["status"] == "void" and remote["total"] == inv.total_cents


def test_void_during_an_attempt_gets_its_own_pass(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    """The revision moved while the worker pushed: the row is not SYNCED but due again."""
    inv = finalized(committed)
    mock.faults(
        [
            {
                "endpoint": "POST /v1/invoices/{id}/finalize",
                "fault": "slow",
                "seconds": 0.5,
                "count": 1,
            }
        ]
    )
    result: list[Outcome] = []
    worker = threading.Thread(target=lambda: result.append(run_once(rt, inv.id)))
    worker.start()
    time.sleep(0.15)
    with committed() as s, s.begin():
        lifecycle.void(s, s.get_one(tables.Invoice, inv.id), now=NOW, rollup_shards=SHARDS)
    worker.join()
    assert result == [Outcome.AGAIN] and sync_row(committed, inv.id).state == "pending"
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert [r["status"] for r in mock.remote_for(inv.public_id)] == ["void"]


def test_resync_of_a_synced_invoice_reverifies_line_by_line(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed, lines=12)
    assert run_once(rt, inv.id) == Outcome.SYNCED
    with committed() as s, s.begin():
        outbox.request_resync(s, s.get_one(tables.Invoice, inv.id), now=NOW)
    before = mock.total_requests()
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert mock.total_requests() - before == 2  # retrieve, list the lines
    assert_exactly_once(mock, inv, lines=12)
    with committed() as s:
        line_ids = s.execute(
            sa.text("SELECT count(stripe_line_id) FROM invoice_items WHERE invoice_id = :i"),
            {"i": inv.id},
        ).scalar_one()
    assert line_ids == 12  # the listing recorded Stripe's line ids
    assert sync_row(committed, inv.id).verify_requested is False


def test_resync_repairs_a_draft_that_misses_lines(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    """A SYNCED invoice whose Stripe copy is a draft missing lines (for example, a partial
    push recorded as synced by an older version): resync adds what is missing, finalizes."""
    inv = finalized(committed, lines=70)
    stripe = rt.gateway.for_attempt()
    with rt.sessions() as s:
        target = push.load_target(s, inv.id or 0)
        customer = push.ensure_customer(s, stripe, target.organization)
        remote = push.create_remote_invoice(s, stripe, target, customer)
        stripe.add_lines(remote.id, target.lines[:40], key="someone:else:40")
    with committed() as s, s.begin():
        s.execute(
            sa.text("UPDATE invoice_sync SET state = 'synced', attempts = 1 WHERE invoice_id = :i"),
            {"i": inv.id},
        )
        outbox.request_resync(s, s.get_one(tables.Invoice, inv.id), now=NOW)
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert_exactly_once(mock, inv, lines=70)


def test_resync_of_a_finalized_invoice_that_differs_fails_with_mismatch(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed, lines=5)
    stripe = rt.gateway.for_attempt()
    with rt.sessions() as s:
        target = push.load_target(s, inv.id or 0)
        customer = push.ensure_customer(s, stripe, target.organization)
        remote = push.create_remote_invoice(s, stripe, target, customer)
        stripe.add_lines(remote.id, target.lines[:4], key="partial:4")  # one line short
        stripe.finalize(remote.id, public_id=inv.public_id)
    with committed() as s, s.begin():
        s.execute(
            sa.text("UPDATE invoice_sync SET state = 'synced', attempts = 1 WHERE invoice_id = :i"),
            {"i": inv.id},
        )
        outbox.request_resync(s, s.get_one(tables.Invoice, inv.id), now=NOW)
    assert run_once(rt, inv.id) == Outcome.FAILED
    row = sync_row(committed, inv.id)
    assert (row.state, row.last_error_code, row.last_error_class) == (
        "failed",
        "MISMATCH",
        "MISMATCH",
    )
    message = row.last_error_message or ""
    assert "it has 4 lines, ours 5" in message and "cannot be edited" in message
    assert "1 of our lines are missing" in message
    assert len(mock.remote_for(inv.public_id)) == 1  # never a second invoice


def test_grouping_is_what_the_worker_sends(committed: sessionmaker[Session]) -> None:
    inv = finalized(committed, lines=3)
    with committed() as s:
        items = (
            s.exec(
                sa.select(tables.InvoiceItem).where(tables.InvoiceItem.invoice_id == inv.id)  # type: ignore[arg-type]
            )
            .scalars()
            .all()
        )
    with committed() as s:
        target = push.load_target(s, inv.id or 0)
    assert target.lines == remote_lines(items, period=(inv.period_start, inv.period_end))
