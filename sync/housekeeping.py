"""Hourly housekeeping on beat: mutation idempotency keys past API_IDEMPOTENCY_KEEP are
forgotten (models/idempotency.py). One indexed DELETE; a missed tick only keeps keys longer."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta

from models import idempotency
from models.db import transaction
from sync import runtime
from sync.celery_app import app, quiet_outages

log = logging.getLogger("billing.housekeeping")


@app.task(name="sync.purge_idempotency_keys")
@quiet_outages
def purge_idempotency_keys() -> int:
    rt = runtime.current()
    keep = timedelta(seconds=rt.config.idempotency_keep_seconds)
    with transaction(rt.sessions) as s:
        gone = idempotency.purge(s, now=datetime.now(UTC), keep=keep)
    log.log(logging.INFO if gone else logging.DEBUG, "purged %d idempotency keys", gone)
    return gone
