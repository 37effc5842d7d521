"""Spend alerts: "tell me when this month passes $500", or "when it is on course to".

A threshold per organization, currency and kind (`set_spend_alert`). ACTUAL alerts: `evaluate`
runs inside the ingest transaction, after the drafts' totals moved: a draft whose total is at
or above a threshold fires it for the draft's period, once (the (alert, period) primary key of
spend_alert_firings, inserted ON CONFLICT DO NOTHING, so two concurrent ingests crossing it fire
it once), and each firing writes a notification_outbox row for a mailer (nothing sends e-mail
here). A new period starts from zero, so it fires again. Late usage counts toward the draft it
lands on, i.e. toward the current period.

FORECAST alerts: `evaluate_forecasts` fires a threshold once the low end of the draft's
projection (models/usage/forecast.py, the range upcomingInvoice answers) reaches it, with the
same firings table (once per period) and the same outbox rows (kind 'spend_alert', payload
'kind': 'forecast'). It runs on a beat task, not in the ingest: the projection reads the
draft's lines (O(lines)), which the ingest would otherwise pay per batch for every draft it
touches, while a few minutes' delay loses nothing for a month-end forecast (docs/forecast.md
has the figures).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import sqlalchemy as sa
from sqlmodel import Session, col, select

from models import tables
from models.errors import InvalidValue
from models.money import normalize_currency
from models.tables import SpendAlertKind
from models.usage import upcoming

MAX_ALERTS_PER_ORGANIZATION = 20


def set_spend_alert(
    session: Session,
    organization: tables.Organization,
    *,
    threshold_cents: int,
    currency: str,
    now: datetime,
    kind: SpendAlertKind = SpendAlertKind.ACTUAL,
) -> tables.SpendAlert:
    """Add a threshold of this kind (the existing one when it is already set). Raises
    InvalidValue (not positive, too many), UnknownCurrency. Caller commits."""
    assert organization.id is not None
    code = normalize_currency(currency)
    if isinstance(threshold_cents, bool) or threshold_cents <= 0:
        raise InvalidValue("threshold must be more than zero", field=("threshold", "cents"))
    a = tables.SpendAlert
    existing = session.exec(
        select(a).where(
            col(a.organization_id) == organization.id,
            col(a.currency) == code,
            col(a.kind) == kind.value,
            col(a.threshold_cents) == threshold_cents,
        )
    ).first()
    if existing is not None:
        return existing
    count = session.exec(
        select(sa.func.count()).select_from(a).where(col(a.organization_id) == organization.id)
    ).one()
    if count >= MAX_ALERTS_PER_ORGANIZATION:
        raise InvalidValue(
            f"an organization has at most {MAX_ALERTS_PER_ORGANIZATION} spend alerts",
            field=("threshold",),
        )
    alert = tables.SpendAlert(
        organization_id=organization.id, currency=code, threshold_cents=threshold_cents,
        kind=kind.value, created_at=now,
    )  # fmt: skip
    session.add(alert)
    session.flush()
    return alert


def evaluate(session: Session, invoice_ids: Sequence[int], *, now: datetime) -> int:
    """Fire every ACTUAL threshold that these drafts' totals have reached and that has not fired for
    their period yet, with a notification_outbox row each. Returns how many fired. One
    statement (the alerts by organization, the firings by primary key). Caller commits."""
    if not invoice_ids:
        return 0
    fired = session.execute(
        sa.text(
            "WITH fired AS ("
            " INSERT INTO spend_alert_firings (alert_id, period_start, invoice_id, total_cents,"
            " triggered_at)"
            " SELECT a.id, i.period_start, i.id, i.total_cents, :now FROM invoices i"
            " JOIN spend_alerts a ON a.organization_id = i.organization_id"
            " AND a.currency = i.currency AND a.threshold_cents <= i.total_cents"
            " AND a.kind = 'actual'"
            " WHERE i.id = ANY(:ids) AND i.status = 'draft'"
            " ORDER BY a.id, i.period_start"
            " ON CONFLICT DO NOTHING"
            " RETURNING alert_id, period_start, invoice_id, total_cents)"
            " INSERT INTO notification_outbox (organization_id, kind, payload, created_at)"
            " SELECT a.organization_id, 'spend_alert', jsonb_build_object("
            " 'alert_id', a.id, 'kind', a.kind, 'threshold_cents', a.threshold_cents, 'currency', a.currency,"
            " 'period', to_char(f.period_start, 'YYYY-MM'), 'invoice_id', f.invoice_id,"
            " 'total_cents', f.total_cents), :now"
            " FROM fired f JOIN spend_alerts a ON a.id = f.alert_id"
            " RETURNING id"
        ),
        {"ids": sorted(set(invoice_ids)), "now": now},
    ).all()
    return len(fired)


# One organization's FORECAST thresholds reached by the low end of its draft's projection: a
# firing each (once per period by the primary key; total_cents holds that low end) and an
# outbox row each, like `evaluate`'s.
_FIRE_FORECAST = sa.text(
    "WITH fired AS ("
    " INSERT INTO spend_alert_firings (alert_id, period_start, invoice_id, total_cents,"
    " triggered_at)"
    " SELECT a.id, :period, :invoice_id, :low, :now FROM spend_alerts a"
    " WHERE a.organization_id = :org AND a.kind = 'forecast' AND a.currency = :currency"
    " AND a.threshold_cents <= :low"
    " ORDER BY a.id"
    " ON CONFLICT DO NOTHING"
    " RETURNING alert_id)"
    " INSERT INTO notification_outbox (organization_id, kind, payload, created_at)"
    " SELECT a.organization_id, 'spend_alert', jsonb_build_object("
    " 'alert_id', a.id, 'kind', a.kind, 'threshold_cents', a.threshold_cents,"
    " 'currency', a.currency, 'period', to_char(CAST(:period AS date), 'YYYY-MM'),"
    " 'invoice_id', CAST(:invoice_id AS bigint), 'total_cents', CAST(:total AS bigint),"
    " 'projected_cents', CAST(:projected AS bigint),"
    " 'projected_low_cents', CAST(:low AS bigint),"
    " 'projected_high_cents', CAST(:high AS bigint)), :now"
    " FROM fired f JOIN spend_alerts a ON a.id = f.alert_id"
    " RETURNING id"
)


def evaluate_forecasts(session: Session, *, now: datetime) -> int:
    """Fire every FORECAST threshold that the low end of its organization's current draft's
    projection has reached and that has not fired for that period, with a notification_outbox
    row each. Returns how many fired. The drafts and lines of all organizations with such
    alerts are read at once (upcoming.projections, O(their lines)); one statement per
    organization whose low end reaches one of its thresholds. Caller commits."""
    # Each organization with FORECAST thresholds, and its smallest: a projection whose low end
    # is below it needs no statement.
    lowest: dict[int, int] = {
        int(org): int(cents)
        for org, cents in session.execute(
            sa.text(
                "SELECT organization_id, min(threshold_cents) FROM spend_alerts"
                " WHERE kind = 'forecast' GROUP BY organization_id ORDER BY organization_id"
            )
        ).all()
    }
    fired = 0
    for org_id, p in upcoming.projections(session, list(lowest), as_of=now).items():
        f = p.forecast
        if f.low_cents < lowest[org_id]:
            continue  # no threshold reached: no statement
        fired += len(
            session.execute(
                _FIRE_FORECAST,
                {
                    "org": org_id,
                    "currency": p.invoice.currency,
                    "period": p.invoice.period_start,
                    "invoice_id": p.invoice.id,
                    "total": p.total_cents,
                    "projected": f.total_cents,
                    "low": f.low_cents,
                    "high": f.high_cents,
                    "now": now,
                },
            ).all()
        )
    return fired


@dataclass(frozen=True)
class AlertState:
    alert: tables.SpendAlert
    period: date | None  # of its latest firing
    triggered_at: datetime | None


def list_alerts(session: Session, organization_id: int) -> list[AlertState]:
    """An organization's thresholds, smallest first (actual before forecast at the same amount),
    each with its latest firing (if any)."""
    a, f = tables.SpendAlert, tables.SpendAlertFiring
    alerts = session.exec(
        select(a)
        .where(col(a.organization_id) == organization_id)
        .order_by(col(a.currency), col(a.threshold_cents), col(a.kind))
    ).all()
    latest: dict[int, tables.SpendAlertFiring] = {}
    if alerts:
        for firing in session.exec(
            select(f)
            .where(col(f.alert_id).in_([x.id for x in alerts]))
            .order_by(col(f.alert_id), col(f.period_start).desc())
        ).all():
            latest.setdefault(firing.alert_id, firing)
    out: list[AlertState] = []
    for alert in alerts:
        assert alert.id is not None
        hit = latest.get(alert.id)
        out.append(
            AlertState(alert, hit.period_start if hit else None, hit.triggered_at if hit else None)
        )
    return out
