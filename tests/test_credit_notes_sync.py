"""Credit notes on Stripe exactly once, through the invoice's outbox row, against the mock over
HTTP: the happy path, each fault kind on the create, a lost response with and without the key
expiring, a credit note issued while its invoice is still syncing, void, and paid invoices'
settlement; then the credit_note.* webhooks (duplicate, out of order).

The passes after a fault are checked by where they end (SYNCED) and by what Stripe holds
(exactly one credit note with our total), not by their exact count: on a loaded machine an
unrelated call may time out once more, which is a retry, not a duplicate."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, select

from models import tables
from models.invoices import credit_notes
from models.invoices.credit_notes import CreditLineInput, Settlement
from models.payments import collection, events
from sync import runtime
from sync.attempt import Outcome
from sync.config import SyncConfig
from sync.runtime import Runtime
from tests.factories import SHARDS, make_invoice, make_org
from tests.sync_helpers import Mock, drive, finalized, run_once, sync_row
from tests.test_sync_worker import Spawn, spawn, wait_for  # noqa: F401 - spawn is a fixture

NOW = datetime(2026, 3, 9, 8, 0, tzinfo=UTC)


def _issue(
    factory: sessionmaker[Session],
    inv: tables.Invoice,
    *,
    amount: int = 100,
    settlement: Settlement | None = None,
) -> tables.CreditNote:
    with factory() as s, s.begin():
        item = s.exec(
            select(tables.InvoiceItem).where(tables.InvoiceItem.invoice_id == inv.id)
        ).first()
        assert item is not None
        return credit_notes.issue(
            s,
            s.get_one(tables.Invoice, inv.id),
            reason="duplicate",
            memo="billed twice",
            lines=[
                CreditLineInput(line_item_id=item.public_id, amount_cents=amount),
                CreditLineInput(description="goodwill", amount_cents=5),
            ],
            settlement=settlement,
            created_by="test",
            now=NOW,
            rollup_shards=SHARDS,
        )


def _remote_notes(mock: Mock) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = httpx.get(f"{mock.url}/_mock/credit_notes").json()["data"]
    return data


def _ours(factory: sessionmaker[Session], note: tables.CreditNote) -> tables.CreditNote:
    with factory() as s:
        return s.get_one(tables.CreditNote, note.id)


def _exactly_once(
    mock: Mock, factory: sessionmaker[Session], note: tables.CreditNote
) -> dict[str, Any]:
    remote = [
        n for n in _remote_notes(mock) if n["metadata"].get("credit_note_id") == note.public_id
    ]
    assert len(remote) == 1, f"{len(remote)} Stripe credit notes for {note.number}"
    r = remote[0]
    assert r["total"] == note.total_cents
    assert _ours(factory, note).stripe_credit_note_id == r["id"]
    lines = r["lines"]["data"]
    assert [ln["type"] for ln in lines] == ["invoice_line_item", "custom_line_item"]
    return r


def test_credit_note_is_created_once_after_the_invoice_and_voided(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    note = _issue(committed, inv)
    assert sync_row(committed, inv.id).state == "pending"  # the issue made the row due
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    remote = _exactly_once(mock, committed, note)
    assert remote["status"] == "issued" and remote["type"] == "pre_payment"
    with committed() as s, s.begin():
        credit_notes.void(s, s.get_one(tables.CreditNote, note.id), now=NOW, rollup_shards=SHARDS)
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    assert _exactly_once(mock, committed, note)["status"] == "void"
    assert _ours(committed, note).stripe_voided_at is not None
    calls = mock.stats()["requests"]
    assert sum(calls["POST /v1/credit_notes"].values()) == 1
    assert sum(calls["POST /v1/credit_notes/{id}/void"].values()) == 1


def test_credit_note_issued_while_its_invoice_is_still_syncing_waits_for_it(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices/{id}/finalize", "fault": "error_500", "count": 1}])
    assert run_once(rt, inv.id) == Outcome.RETRY  # the Stripe invoice is still a draft
    note = _issue(committed, inv)
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    _exactly_once(mock, committed, note)
    (remote_invoice,) = mock.remote_for(inv.public_id)
    assert remote_invoice["status"] == "open"


@pytest.mark.parametrize(
    "fault",
    [
        {"fault": "error_500"},
        {"fault": "rate_limit", "retry_after": 0},
        {"fault": "lost_response"},
        {"fault": "timeout", "seconds": 1},
    ],
    ids=["error_500", "rate_limit", "lost_response", "timeout"],
)
def test_each_fault_on_create_still_gives_one_credit_note(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session], fault: dict[str, Any]
) -> None:
    inv = finalized(committed)
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    note = _issue(committed, inv)
    mock.faults([{"endpoint": "POST /v1/credit_notes", "count": 1, **fault}])
    # A 0.5 s read timeout only where the fault is a held request: elsewhere, on a loaded
    # machine, an ordinary call could time out first and leave the fault for a later attempt.
    timeout = fault["fault"] == "timeout"
    impatient = runtime.build(replace(rt.config, stripe_timeout_seconds=0.5)) if timeout else rt
    try:
        assert run_once(impatient, inv.id) == Outcome.RETRY
    finally:
        if impatient is not rt:
            impatient.sessions.kw["bind"].dispose()
    if timeout:
        time.sleep(0.6)  # let the mock finish holding the dropped request
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    _exactly_once(mock, committed, note)


def test_lost_response_on_create_after_the_key_expired_is_found_by_the_list(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    note = _issue(committed, inv)
    mock.faults(
        [{"endpoint": "POST /v1/credit_notes", "fault": "lost_response", "count": 1}],
        idempotency_ttl_seconds=1,
    )
    assert run_once(rt, inv.id) == Outcome.RETRY
    time.sleep(1.1)  # the key is gone: only the list by metadata prevents a second one
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    _exactly_once(mock, committed, note)


def test_paid_invoice_credit_goes_to_stripe_with_its_settlement(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    with committed() as s, s.begin():
        inv = make_invoice(s, make_org(s, slug="paid-co"), status="paid")
    note = _issue(committed, inv, settlement=Settlement(credit_balance_cents=105))
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    remote = _exactly_once(mock, committed, note)
    assert remote["type"] == "post_payment" and remote["post_payment_amount"] == 105
    (customer,) = mock.customers()
    assert customer["balance"] == -105  # credited to the customer's balance


def _event(event_id: str, kind: str, obj: dict[str, Any]) -> collection.Event:
    body = {"id": event_id, "object": "event", "type": kind, "created": int(NOW.timestamp()),
            "data": {"object": obj}}  # fmt: skip
    return events.read(body, handled=collection.HANDLED, now=NOW, skew=timedelta(minutes=5))


def test_webhooks_duplicate_and_out_of_order(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open")
    note = credit_notes.issue(
        db,
        inv,
        reason="duplicate",
        memo=None,
        lines=[CreditLineInput(description="x", amount_cents=10)],
        settlement=None,
        created_by="test",
        now=NOW,
        rollup_shards=SHARDS,
    )
    obj = {
        "id": "cn_remote1",
        "object": "credit_note",
        "status": "issued",
        "metadata": {"credit_note_id": note.public_id},
    }
    voided = {**obj, "status": "void", "voided_at": 1_800_000_000}
    # Voided here first, then Stripe's events arrive out of order (void before created).
    credit_notes.void(db, note, now=NOW, rollup_shards=SHARDS)
    assert (
        collection.handle(db, _event("evt_2", "credit_note.voided", voided), now=NOW).outcome
        == "ok: void here too"
    )
    db.refresh(note)
    assert note.stripe_credit_note_id == "cn_remote1" and note.stripe_voided_at is not None
    assert (
        collection.handle(db, _event("evt_1", "credit_note.created", obj), now=NOW).outcome
        == "ok: void here"
    )
    assert (
        collection.handle(db, _event("evt_2", "credit_note.voided", voided), now=NOW).outcome
        == "duplicate"
    )


def test_webhook_void_on_stripe_of_an_issued_credit_note_is_surfaced(db: Session) -> None:
    org = make_org(db)
    inv = make_invoice(db, org, status="open")
    note = credit_notes.issue(
        db,
        inv,
        reason="duplicate",
        memo=None,
        lines=[CreditLineInput(description="x", amount_cents=10)],
        settlement=None,
        created_by="test",
        now=NOW,
        rollup_shards=SHARDS,
    )
    obj = {
        "id": "cn_r",
        "object": "credit_note",
        "status": "void",
        "voided_at": 1_800_000_000,
        "metadata": {"credit_note_id": note.public_id},
    }
    out = collection.handle(db, _event("evt_9", "credit_note.voided", obj), now=NOW).outcome
    assert out == "sync failed: REMOTE_CREDIT_NOTE_VOIDED"
    db.refresh(note)
    assert note.status == "issued"  # never copied silently
    row = db.get_one(tables.InvoiceSync, inv.id)
    assert (row.state, row.last_error_code) == ("failed", "REMOTE_CREDIT_NOTE_VOIDED")


def test_auth_error_on_create_pauses_then_gives_one_credit_note(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    note = _issue(committed, inv)
    mock.faults([{"endpoint": "POST /v1/credit_notes", "fault": "auth_error", "count": 1}])
    assert run_once(rt, inv.id) in (Outcome.RETRY, Outcome.PAUSED)
    assert run_once(rt, inv.id) == Outcome.PAUSED  # the breaker is open: nothing is called
    time.sleep(rt.config.breaker_seconds + 0.1)  # the breaker's half-open probe is due
    assert drive(rt, inv.id)[-1] == Outcome.SYNCED
    _exactly_once(mock, committed, note)


def test_a_real_worker_syncs_a_credit_note_issued_while_its_invoice_waits(
    spawn: Spawn,  # noqa: F811 - the fixture imported above
    sync_config: SyncConfig,
    mock: Mock,
    committed: sessionmaker[Session],
) -> None:
    """Celery worker and beat processes: the credit note is issued before the invoice ever
    reached Stripe, nothing is enqueued, and the sweeper's pass creates both, in order."""
    inv = finalized(committed, slug="worker-co")
    note = _issue(committed, inv)
    spawn("worker")
    spawn("beat")
    assert wait_for(committed, inv.id, "synced", seconds=60) == "synced"
    _exactly_once(mock, committed, note)
