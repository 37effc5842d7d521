"""The demo seed feeds the month in progress through ingestion, and the feed's events are valid."""

from __future__ import annotations

import io
import random
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from demo import feed, seed
from models.usage import ingest, verify
from models.usage.ingest import UsageEventInput

NOW = datetime(2026, 3, 18, 9, 30, tzinfo=UTC)


def test_seed_ingests_the_current_month_and_the_feed_adds_to_it(
    committed: sessionmaker[Session],
) -> None:
    seed.run(committed, now=NOW, shards=4, out=io.StringIO())
    with committed() as s:
        drafts = s.execute(
            sa.text(
                "SELECT i.id, i.subtotal_cents FROM usage_drafts d JOIN invoices i "
                "ON i.id = d.invoice_id WHERE i.status = 'draft'"
            )
        ).all()
        assert len(drafts) == 12  # the current month and the previous one, not yet closed
        assert s.execute(sa.text("SELECT count(*) FROM usage_events")).scalar_one() > 1000
        # Usage lines come from events only; the flat monthly lines were added by hand.
        assert (
            s.execute(
                sa.text(
                    "SELECT count(*) FROM invoice_items l JOIN usage_drafts d USING (invoice_id) "
                    "WHERE l.kind = 'usage' AND l.price_id IS NULL"
                )
            ).scalar_one()
            == 0
        )
        assert verify.verify(s) == []
    batch = feed._batch(random.Random(1), 5.0, NOW)
    with committed() as s, s.begin():
        result = ingest.record_usage(s, [UsageEventInput.from_json(e) for e in batch], now=NOW)
    assert (result.accepted, result.rejected) == (len(batch), [])
    with committed() as s:
        assert verify.verify(s) == []
