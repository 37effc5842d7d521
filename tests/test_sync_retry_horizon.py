"""Retries measured in time, not in tries (issue 24).

Stripe saves a 500 for its idempotency key once it began executing, and replays it for every
retry with that key. The sync must never spend an attempt on such a replay: after a 5xx on an
idempotent POST the next attempt reads the remote state and sends the step under the next key
generation. And a transient failure is retried for a span of time (`SYNC_RETRY_HORIZON`,
counted from the first failure), not for a number of attempts: a Stripe incident lasts longer
than eight quick backoffs.

The sync's clock is the database's `now()`; these tests make time pass by moving the row's
timestamps back (`elapse`), never by sleeping.
"""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from settings import Settings
from sync.attempt import Outcome
from sync.runtime import Runtime
from tests.sync_helpers import (
    Mock,
    advance_to_due,
    assert_exactly_once,
    finalized,
    history,
    run_once,
    sync_row,
)

DEFAULT_MAX_ATTEMPTS = Settings.model_fields["sync_max_attempts"].default
FINALIZE = "POST /v1/invoices/{id}/finalize"


def elapse(rt: Runtime, invoice_id: int | None, seconds: float) -> None:
    """`seconds` pass for this invoice's row: every timestamp the retry policy reads moves back."""
    with rt.sessions() as s, s.begin():
        s.execute(
            sa.text(
                "UPDATE invoice_sync SET"
                " next_attempt_at = next_attempt_at - make_interval(secs => :d),"
                " retrying_since = retrying_since - make_interval(secs => :d)"
                " WHERE invoice_id = :i"
            ),
            {"i": invoice_id, "d": seconds},
        )


def test_a_run_of_saved_500s_syncs_once_and_never_spends_an_attempt_on_a_replay(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    """Ten finalize requests in a row end in a 500 that Stripe saves for their key (more than the
    old limit of eight attempts), one of them after the request executed, and an add_lines 500
    after executing: the invoice is SYNCED, once, and no request is a replay."""
    rt = replace(rt, config=replace(rt.config, max_attempts=DEFAULT_MAX_ATTEMPTS))
    inv = finalized(committed, lines=3)
    mock.faults(
        [
            {"endpoint": "POST /v1/invoices/{id}/add_lines", "fault": "saved_500", "count": 1},
            {"endpoint": FINALIZE, "fault": "saved_500", "count": 9, "executed": False},
            {"endpoint": FINALIZE, "fault": "saved_500", "count": 1, "executed": True},
        ]
    )
    outcomes = []
    for _ in range(20):
        advance_to_due(rt, inv.id)
        outcomes.append(run_once(rt, inv.id))
        if outcomes[-1] in (Outcome.SYNCED, Outcome.FAILED):
            break
    assert outcomes[-1] == Outcome.SYNCED, outcomes
    assert outcomes.count(Outcome.SYNCED) == 1
    assert_exactly_once(mock, inv, lines=3)
    steps = history(committed, inv.id)
    assert [h for h in steps if h["error_code"] == "idempotent_replayed_500"] == [], steps
    # Every finalize request was a fresh one: nine saved 500s that did nothing, then one that
    # did, whose effect the next attempt read instead of finalizing again.
    assert mock.stats()["requests"][FINALIZE] == {"500": 10}
    assert len(steps) == 12  # the add_lines 500, ten finalize 500s, the success
    assert sync_row(committed, inv.id).key_generations == {"lines": 2, "finalize": 11}


def test_transient_failures_are_retried_until_the_horizon_then_fail(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    """Stripe answers 500 to every create for hours: the invoice keeps RETRYING well past the
    old eight attempts while the horizon lasts (counted from the first failure), and is FAILED
    by the first failure after it, with Stripe's error kept."""
    horizon = 6 * 3600.0
    rt = replace(
        rt,
        config=replace(rt.config, max_attempts=DEFAULT_MAX_ATTEMPTS, retry_horizon_seconds=horizon),
    )
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "probability": 1.0}])
    assert run_once(rt, inv.id) == Outcome.RETRY
    first = sync_row(committed, inv.id)
    assert first.retrying_since is not None
    # 20 more attempts, 15 minutes apart: five hours after the first failure, still retrying.
    for _ in range(20):
        elapse(rt, inv.id, 900)
        advance_to_due(rt, inv.id)
        assert run_once(rt, inv.id) == Outcome.RETRY
    row = sync_row(committed, inv.id)
    assert first.retrying_since is not None
    moved = first.retrying_since - timedelta(seconds=20 * 900)
    assert (row.state, row.attempts, row.retrying_since) == ("retrying", 21, moved)
    # Past the horizon: the next failure is the last.
    elapse(rt, inv.id, 3600 + 1)
    advance_to_due(rt, inv.id)
    assert run_once(rt, inv.id) == Outcome.FAILED
    row = sync_row(committed, inv.id)
    assert (row.state, row.last_error_http_status, row.next_attempt_at) == ("failed", 500, None)


def test_a_retry_is_never_scheduled_past_the_horizon(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    """Close to the horizon, the backoff is cut so that the last try still happens inside it."""
    rt = replace(
        rt,
        config=replace(
            rt.config,
            max_attempts=DEFAULT_MAX_ATTEMPTS,
            retry_horizon_seconds=3600.0,
            backoff_base_seconds=600.0,
            backoff_cap_seconds=600.0,
        ),
    )
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "probability": 1.0}])
    assert run_once(rt, inv.id) == Outcome.RETRY
    elapse(rt, inv.id, 3600 - 30)
    advance_to_due(rt, inv.id)
    assert run_once(rt, inv.id) == Outcome.RETRY
    with committed() as s:
        left = s.execute(
            sa.text(
                "SELECT extract(epoch FROM retrying_since + interval '1 hour' - next_attempt_at)"
                " FROM invoice_sync WHERE invoice_id = :i"
            ),
            {"i": inv.id},
        ).scalar_one()
    assert float(left) >= 0


def test_success_and_resync_forget_the_first_failure(
    rt: Runtime, mock: Mock, committed: sessionmaker[Session]
) -> None:
    inv = finalized(committed)
    mock.faults([{"endpoint": "POST /v1/invoices", "fault": "error_500", "count": 1}])
    assert run_once(rt, inv.id) == Outcome.RETRY
    assert sync_row(committed, inv.id).retrying_since is not None
    advance_to_due(rt, inv.id)
    assert run_once(rt, inv.id) == Outcome.SYNCED
    assert sync_row(committed, inv.id).retrying_since is None


@pytest.mark.parametrize(("raw", "seconds"), [("24h", 86400.0), ("90m", 5400.0), ("3600", 3600.0)])
def test_the_horizon_is_a_documented_setting_inside_stripes_key_lifetime(
    raw: str, seconds: float
) -> None:
    assert Settings.model_fields["sync_retry_horizon_seconds"].default == 86400.0
    assert Settings(SYNC_RETRY_HORIZON=raw).sync_retry_horizon_seconds == seconds  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="SYNC_RETRY_HORIZON"):
        Settings(SYNC_RETRY_HORIZON="25h")  # type: ignore[call-arg]
