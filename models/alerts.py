"""Spend alerts: "tell me when this month passes $500".

A threshold per organization and currency (`set_spend_alert`). `evaluate` runs inside the
ingest transaction, after the drafts' totals moved: a draft whose total is at or above a
threshold fires it for the draft's period, once (the (alert, period) primary key of
spend_alert_firings, inserted ON CONFLICT DO NOTHING, so two concurrent ingests crossing it fire
it once), and each firing writes a notification_outbox row for a mailer (nothing sends e-mail
here). A new period starts from zero, so it fires again. Late usage counts toward the draft it
lands on, i.e. toward the current period.
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

MAX_ALERTS_PER_ORGANIZATION = 20


def set_spend_alert(
    session: Session,
    organization: tables.Organization,
    *,
    threshold_cents: int,
    currency: str,
    now: datetime,
) -> tables.SpendAlert:
    """Add a threshold (the existing one when it is already set). Raises InvalidValue (not
    positive, too many), UnknownCurrency. Caller commits."""
    assert organization.id is not None
    code = normalize_currency(currency)
    if isinstance(threshold_cents, bool) or threshold_cents <= 0:
        raise InvalidValue("threshold must be more than zero", field=("threshold", "cents"))
    a = tables.SpendAlert
    existing = session.exec(
        select(a).where(
            col(a.organization_id) == organization.id,
            col(a.currency) == code,
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
        created_at=now,
    )  # fmt: skip
    session.add(alert)
    session.flush()
    return alert


def evaluate(session: Session, invoice_ids: Sequence[int], *, now: datetime) -> int:
    """Fire every threshold that these drafts' totals have reached and that has not fired for
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
            " WHERE i.id = ANY(:ids) AND i.status = 'draft'"
            " ORDER BY a.id, i.period_start"
            " ON CONFLICT DO NOTHING"
            " RETURNING alert_id, period_start, invoice_id, total_cents)"
            " INSERT INTO notification_outbox (organization_id, kind, payload, created_at)"
            " SELECT a.organization_id, 'spend_alert', jsonb_build_object("
            " 'alert_id', a.id, 'threshold_cents', a.threshold_cents, 'currency', a.currency,"
            " 'period', to_char(f.period_start, 'YYYY-MM'), 'invoice_id', f.invoice_id,"
            " 'total_cents', f.total_cents), :now"
            " FROM fired f JOIN spend_alerts a ON a.id = f.alert_id"
            " RETURNING id"
        ),
        {"ids": sorted(set(invoice_ids)), "now": now},
    ).all()
    return len(fired)


@dataclass(frozen=True)
class AlertState:
    alert: tables.SpendAlert
    period: date | None  # of its latest firing
    triggered_at: datetime | None


def list_alerts(session: Session, organization_id: int) -> list[AlertState]:
    """An organization's thresholds, smallest first, each with its latest firing (if any)."""
    a, f = tables.SpendAlert, tables.SpendAlertFiring
    alerts = session.exec(
        select(a)
        .where(col(a.organization_id) == organization_id)
        .order_by(col(a.currency), col(a.threshold_cents))
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
