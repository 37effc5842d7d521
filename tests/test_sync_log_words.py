"""Operator-facing words in the sync (issue 24): the lines a worker logs about an invoice name it
as operators know it, by its number and public id, never by our internal row id alone."""

from __future__ import annotations

import logging

import pytest
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from sync import tasks
from sync.runtime import Runtime
from tests.sync_helpers import Mock, advance_to_due, finalized


def _sync_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "billing.sync"]


def test_attempt_lines_carry_the_invoice_number_and_public_id(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session], caplog: pytest.LogCaptureFixture
) -> None:
    inv = finalized(committed)
    assert inv.number is not None
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "count": 1}])
    caplog.set_level(logging.INFO, logger="billing.sync")
    assert tasks.sync_invoice(inv.id) == "retry"
    advance_to_due(rt, inv.id)
    assert tasks.sync_invoice(inv.id) == "synced"
    lines = _sync_lines(caplog)
    failed = [line for line in lines if "failed" in line]
    synced = [line for line in lines if line.endswith("synced")]
    assert failed and synced, lines
    for line in failed + synced:
        assert inv.number in line and inv.public_id in line, line
        assert f"invoice {inv.id}:" not in line and f"invoice {inv.id} " not in line, line
    # The structured fields keep the number too, for log search.
    records = [r for r in caplog.records if r.name == "billing.sync"]
    assert all(getattr(r, "invoice_number", None) == inv.number for r in records)
