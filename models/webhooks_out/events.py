"""Events: written in the transaction of what they announce, then delivered after commit.

`emit` is the one way code announces something (`credit_note.issued` once credit notes
exist: call `emit(session, CREDIT_NOTE_ISSUED, ...)` in the transaction that issues the note).
`emit_finalized` announces many finalized invoices in one statement: the month-end close calls
it per chunk, `lifecycle.finalize` with one id (N = 1 is the single case). Every invoice.*
event carries the same invoice object (SQL `webhook_invoice_json`, migration 0011). Fan-out to
endpoints is a trigger on webhook_events, so every emitter gets it.

(A trigger on invoices was measured first and dropped: a statement trigger with transition
tables made every UPDATE of invoices, the ingest's totals included, pay for them; a row trigger
WHEN draft -> open cost ~1.3 ms per finalized invoice with an endpoint subscribed, under load
22 — docs/webhooks-out.md.)

Spend alerts (threshold and forecast alike) keep writing notification_outbox rows in the ingest
transaction, as they did: that row already is a transactional outbox record. The sweep turns
unsent rows into `spend_alert.fired` events (`promote_notifications`), in one transaction that
also sets their sent_at, so each row becomes exactly one event, whichever code wrote it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Session

SPEND_ALERT_FIRED = "spend_alert.fired"
INVOICE_FINALIZED = "invoice.finalized"
INVOICE_PAYMENT_FAILED = "invoice.payment_failed"
CREDIT_NOTE_ISSUED = "credit_note.issued"

# What an endpoint may subscribe to, with what each means (docs and the schema read these).
EVENT_TYPES: dict[str, str] = {
    SPEND_ALERT_FIRED: "A spend alert crossed its threshold (or forecast) for a period.",
    INVOICE_FINALIZED: "A draft became an open invoice with its number and total.",
    INVOICE_PAYMENT_FAILED: "Stripe reported a failed payment attempt for an invoice.",
    CREDIT_NOTE_ISSUED: "A credit note was issued against an invoice.",
}


def emit(
    session: Session,
    event_type: str,
    *,
    organization_id: int | None,
    object_id: str | None,
    payload: dict[str, Any],
    now: datetime,
) -> str | None:
    """Write one event (and, by the fan-out trigger, a delivery per live endpoint that wants
    it) in the caller's transaction. Returns its id, or None when no endpoint wants the type
    (no event is kept for nobody). Caller commits; the sweep delivers after commit."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {event_type!r}")  # a bug, not an input error
    wanted = session.execute(
        sa.text(
            "SELECT EXISTS (SELECT 1 FROM webhook_endpoints"
            " WHERE deleted_at IS NULL AND :t = ANY (event_types))"
        ),
        {"t": event_type},
    ).scalar_one()
    if not wanted:
        return None
    event_id: str = session.execute(
        sa.text(
            "INSERT INTO webhook_events (type, organization_id, object_id, payload, created_at)"
            " VALUES (:t, :o, :obj, :p, :now) RETURNING id"
        ).bindparams(sa.bindparam("p", type_=JSONB)),
        {"t": event_type, "o": organization_id, "obj": object_id, "p": payload, "now": now},
    ).scalar_one()
    return event_id


def emit_for_invoice(
    session: Session, event_type: str, invoice_id: int, *, extra: dict[str, Any], now: datetime
) -> str | None:
    """`emit` with the invoice object every invoice.* event carries (webhook_invoice_json),
    plus `extra` fields. Caller commits."""
    row = session.execute(
        sa.text(
            "SELECT i.organization_id, i.public_id, webhook_invoice_json(i) FROM invoices i"
            " WHERE i.id = :i"
        ),
        {"i": invoice_id},
    ).one()
    return emit(
        session,
        event_type,
        organization_id=row[0],
        object_id=row[1],
        payload={**row[2], **extra},
        now=now,
    )


def emit_finalized(session: Session, invoice_ids: list[int], *, now: datetime) -> int:
    """`invoice.finalized` for each of these (just finalized) invoices, in one INSERT ... SELECT
    in the caller's transaction; nothing when no endpoint wants the type. Returns how many
    events were written. Caller commits."""
    if not invoice_ids:
        return 0
    written = session.execute(
        sa.text(
            "INSERT INTO webhook_events (type, organization_id, object_id, payload, created_at)"
            " SELECT :t, i.organization_id, i.public_id, webhook_invoice_json(i), :now"
            " FROM invoices i WHERE i.id = ANY(CAST(:ids AS bigint[]))"
            " AND EXISTS (SELECT 1 FROM webhook_endpoints"
            " WHERE deleted_at IS NULL AND :t = ANY (event_types))"
            " ORDER BY i.id"
        ),
        {"t": INVOICE_FINALIZED, "ids": sorted(invoice_ids), "now": now},
    )
    return int(written.rowcount)  # type: ignore[attr-defined]


def promote_notifications(session: Session, *, batch: int, now: datetime) -> int:
    """Turn up to `batch` unsent notification_outbox rows into spend_alert.fired events and mark
    them sent, in the caller's transaction (the event is created now, a sweep after the alert;
    the payload's triggered_at says when the alert fired) (rows claimed FOR UPDATE SKIP LOCKED, so two sweeps
    never take the same row). Rows nobody subscribes to are marked sent without an event.
    Returns how many rows were taken. Caller commits."""
    taken = session.execute(
        sa.text(
            "WITH taken AS ("
            " SELECT id FROM notification_outbox WHERE sent_at IS NULL AND kind = :kind"
            " ORDER BY id LIMIT :batch FOR UPDATE SKIP LOCKED),"
            " sent AS ("
            " UPDATE notification_outbox n SET sent_at = :now FROM taken"
            " WHERE n.id = taken.id"
            " RETURNING n.id, n.organization_id, n.kind, n.payload, n.created_at),"
            " wanted AS (SELECT EXISTS (SELECT 1 FROM webhook_endpoints"
            " WHERE deleted_at IS NULL AND :t = ANY (event_types)) AS yes),"
            " events AS ("
            " INSERT INTO webhook_events (type, organization_id, object_id, payload, created_at)"
            " SELECT :t, s.organization_id, 'notification:' || s.id,"
            " s.payload || jsonb_build_object('notification_kind', s.kind, 'organization',"
            " (SELECT o.slug FROM organizations o WHERE o.id = s.organization_id),"
            " 'triggered_at', s.created_at),"
            " :now"
            " FROM sent s, wanted WHERE wanted.yes ORDER BY s.id RETURNING 1)"
            " SELECT (SELECT count(*) FROM sent), (SELECT count(*) FROM events)"
        ),
        {"batch": batch, "now": now, "t": SPEND_ALERT_FIRED, "kind": "spend_alert"},
    ).one()
    return int(taken[0])
