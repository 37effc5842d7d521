"""Forecast spend alerts on beat (models/alerts.py evaluate_forecasts): every
FORECAST_ALERTS_EVERY seconds (sync/celery_app.py), each organization with a FORECAST threshold has its draft
projected once and crossed thresholds fire into the notification outbox, once per period.

Not in the ingest transaction: the ingest is the hottest path and a projection reads the
draft's lines, a cost it would pay per batch and per draft touched; the low end of a month-end
projection moves slowly, so a few minutes' delay loses nothing (docs/forecast.md). A missed tick
only fires later; two overlapping ticks fire once (the firings' primary key)."""

from __future__ import annotations

import logging
from datetime import UTC, datetime

from models import alerts
from models.db import transaction
from sync import runtime
from sync.celery_app import app, quiet_outages

log = logging.getLogger("billing.forecast_alerts")


@app.task(name="sync.evaluate_forecast_alerts")
@quiet_outages
def evaluate_forecast_alerts() -> int:
    rt = runtime.current()
    with transaction(rt.sessions) as s:
        fired = alerts.evaluate_forecasts(s, now=datetime.now(UTC))
    log.log(logging.INFO if fired else logging.DEBUG, "%d forecast alerts fired", fired)
    return fired
