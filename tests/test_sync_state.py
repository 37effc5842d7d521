"""The `invoice_sync` state machine (`models/sync_state/outbox.py`): every transition that `ALLOWED` lists
is walked on a real row through the public function that makes it, the walk covers the table
exactly, and a change the table does not list is refused before any SQL runs."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models import tables
from models.invoices import lifecycle
from models.sync_state import outbox
from models.sync_state.outbox import ALLOWED, IllegalSyncTransition, Lease, SyncError
from models.tables import SyncStatus
from settings import PROJECT_ROOT
from tests.factories import NOW, SHARDS, make_invoice, make_org

ERROR = SyncError("APIError", "api_error", "boom", 500, "req_1")


@dataclass
class Row:
    invoice_id: int
    lease: Lease | None = None


Factory = sessionmaker[Session]


def _draft(c: Factory) -> Row:
    with c() as s, s.begin():
        inv = make_invoice(s, make_org(s), lines=1)
        assert inv.id is not None
        return Row(inv.id)


def _finalize(c: Factory, row: Row) -> None:
    with c() as s, s.begin():
        lifecycle.finalize(
            s, s.get_one(tables.Invoice, row.invoice_id), now=NOW, rollup_shards=SHARDS
        )


def _claim(c: Factory, row: Row) -> None:
    with c() as s, s.begin():
        row.lease = outbox.claim(s, row.invoice_id, owner="walker", lease_seconds=60)
    assert row.lease is not None


def _fail(state: SyncStatus) -> Callable[[Factory, Row], None]:
    def step(c: Factory, row: Row) -> None:
        assert row.lease is not None
        with c() as s, s.begin():
            outbox.fail(s, row.lease, ERROR, state=state, delay_seconds=0, horizon_seconds=86400)

    return step


def _succeed(c: Factory, row: Row) -> None:
    assert row.lease is not None
    with c() as s, s.begin():
        outbox.succeed(s, row.lease)


def _resync(c: Factory, row: Row) -> None:
    with c() as s, s.begin():
        outbox.request_resync(s, s.get_one(tables.Invoice, row.invoice_id), now=NOW)


def _overtaken_then_succeed(c: Factory, row: Row) -> None:
    _resync(c, row)  # a resync while the worker holds the row: the revision moves
    _succeed(c, row)


def _reconcile(c: Factory, row: Row) -> None:
    with c() as s, s.begin():
        assert outbox.mark_for_reconcile(s, older_than_seconds=0, batch=10) == [row.invoice_id]


def _retry_failed(c: Factory, row: Row) -> None:
    with c() as s, s.begin():
        assert outbox.retry_failed(s, organization_id=None, now=NOW) == 1


# How to bring a row into each state, from a draft (NOT_REQUIRED: no row yet).
SETUP: dict[SyncStatus, list[Callable[[Factory, Row], None]]] = {
    SyncStatus.NOT_REQUIRED: [],
    SyncStatus.PENDING: [_finalize],
    SyncStatus.SYNCING: [_finalize, _claim],
    SyncStatus.RETRYING: [_finalize, _claim, _fail(SyncStatus.RETRYING)],
    SyncStatus.SYNCED: [_finalize, _claim, _succeed],
    SyncStatus.FAILED: [_finalize, _claim, _fail(SyncStatus.FAILED)],
}

# The public function that makes each transition.
STEP: dict[tuple[SyncStatus, SyncStatus], Callable[[Factory, Row], None]] = {
    (SyncStatus.NOT_REQUIRED, SyncStatus.PENDING): _finalize,
    (SyncStatus.PENDING, SyncStatus.SYNCING): _claim,
    (SyncStatus.RETRYING, SyncStatus.SYNCING): _claim,
    (SyncStatus.RETRYING, SyncStatus.PENDING): _resync,
    (SyncStatus.SYNCING, SyncStatus.SYNCED): _succeed,
    (SyncStatus.SYNCING, SyncStatus.RETRYING): _fail(SyncStatus.RETRYING),
    (SyncStatus.SYNCING, SyncStatus.FAILED): _fail(SyncStatus.FAILED),
    (SyncStatus.SYNCING, SyncStatus.PENDING): _overtaken_then_succeed,
    (SyncStatus.SYNCED, SyncStatus.PENDING): _reconcile,
    (SyncStatus.FAILED, SyncStatus.PENDING): _retry_failed,
}

EDGES = sorted((a, b) for a, targets in ALLOWED.items() for b in targets)


def _state(c: Factory, row: Row) -> SyncStatus:
    with c() as s:
        found = outbox.get(s, row.invoice_id)
    return SyncStatus.NOT_REQUIRED if found is None else SyncStatus(found.state)


def test_the_walk_covers_the_table_exactly() -> None:
    assert set(STEP) == set(EDGES)
    assert set(ALLOWED) == set(SyncStatus)


@pytest.mark.parametrize(("before", "after"), EDGES, ids=lambda s: s.value)
def test_each_allowed_transition(committed: Factory, before: SyncStatus, after: SyncStatus) -> None:
    row = _draft(committed)
    for setup in SETUP[before]:
        setup(committed, row)
    assert _state(committed, row) == before
    STEP[(before, after)](committed, row)
    assert _state(committed, row) == after


def test_a_transition_outside_the_table_is_refused() -> None:
    for before in SyncStatus:
        for after in SyncStatus:
            if before != after and after not in ALLOWED[before]:
                with pytest.raises(IllegalSyncTransition):
                    outbox.check(before, after)
    lease = Lease(1, "x", 0, 1, verify_requested=False, claimed_before=False)
    with pytest.raises(IllegalSyncTransition):  # before any SQL: no session is needed
        outbox.fail(None, lease, ERROR, state=SyncStatus.SYNCED, delay_seconds=0, horizon_seconds=1)  # type: ignore[arg-type]


def test_success_and_a_reset_clear_the_error_with_one_helper(committed: Factory) -> None:
    row = _draft(committed)
    for setup in SETUP[SyncStatus.FAILED]:
        setup(committed, row)
    with committed() as s:
        failed = outbox.get(s, row.invoice_id)
    assert failed is not None and failed.last_error_code == "api_error"
    _retry_failed(committed, row)
    with committed() as s:
        reset = outbox.get(s, row.invoice_id)
    assert reset is not None
    assert all(getattr(reset, column) is None for column in outbox.ERROR_COLUMNS)


def test_no_state_is_spelled_as_a_literal_in_the_sync_sql() -> None:
    """States are bound from SyncStatus: a grep finds no quoted state in models/ or sync/."""
    values = "|".join(s.value for s in SyncStatus)
    literal = re.compile(rf"'({values})'")
    files = [*Path(PROJECT_ROOT, "models").glob("*.py"), *Path(PROJECT_ROOT, "sync").glob("*.py")]
    offenders = [
        f"{f.relative_to(PROJECT_ROOT)}:{n}"
        for f in files
        for n, line in enumerate(f.read_text().splitlines(), 1)
        if literal.search(line)
    ]
    assert offenders == []
