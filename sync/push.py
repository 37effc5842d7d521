"""Pushing one invoice to Stripe: the steps, in order, each resumable.

  ensure_customer -> create_remote_invoice -> add_missing_lines -> finalize_remote -> verify_remote
  (or void_remote, for an invoice voided here)

Every remote id is stored as soon as it is known, in its own short transaction, so a crash
resumes where it stopped. Whenever an earlier attempt may have reached Stripe (any attempt after
the first, or a forced re-verify), a step looks for its object by metadata before creating it:
that covers lost responses and idempotency keys that Stripe has already pruned (after 24 h).
On a first attempt nothing can exist yet, so the happy path costs 2 + ceil(lines / 50) calls.
"""

from __future__ import annotations

import hashlib
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session, col, select

from models import tables
from models.db import transaction
from sync import claims
from sync.classify import Action, Mismatch, Verdict, classify
from sync.config import SyncConfig
from sync.grouping import RemoteLine, remote_lines
from sync.metrics import SYNC_ERRORS, SYNC_SECONDS
from sync.stripe_client import Gateway

log = logging.getLogger("billing.sync")


def backoff_seconds(
    attempt: int, *, base: float, cap: float, retry_after: float | None, rng: random.Random
) -> float:
    """Exponential backoff with full jitter (uniform in [0, min(cap, base * 2^(n-1))]), but
    never sooner than Stripe's Retry-After."""
    delay = rng.uniform(0, min(cap, base * 2 ** max(0, attempt - 1)))
    return max(delay, retry_after or 0.0)


def chunks(lines: Sequence[RemoteLine], size: int) -> list[list[RemoteLine]]:
    return [list(lines[i : i + size]) for i in range(0, len(lines), size)]


@dataclass
class Attempt:
    """What one pass knows: the rows it read and the step it is on (for the history)."""

    lease: claims.Lease
    invoice: tables.Invoice
    organization: tables.Organization
    step: str = "start"
    remote: Any = None
    # Set by every call that moved the invoice forward on Stripe (created it, added a chunk of
    # lines, finalized or voided it). A failed attempt that made progress is not counted against
    # the retry limit: the limit bounds attempts that got nowhere, so a big invoice under heavy
    # faults converges chunk by chunk instead of failing after N partial passes.
    progress: bool = False
    notes: list[str] = field(default_factory=list)


@dataclass
class Pusher:
    sessions: sessionmaker[Session]
    gateway: Gateway
    config: SyncConfig
    rng: random.Random = field(default_factory=random.Random)

    def run(self, invoice_id: int, *, owner: str) -> str:
        """One attempt at one invoice. Returns the outcome: synced, retry, failed, paused,
        or not_due (not claimable: another worker holds it, or nothing is due)."""
        if self.gateway.breaker.is_open():
            return "paused"  # leave the row due; the sweeper retries once the breaker closes
        with transaction(self.sessions) as s:
            lease = claims.claim(
                s, invoice_id, owner=owner, lease_seconds=self.config.lease_seconds
            )
        if lease is None:
            return "not_due"
        started_at = datetime.now(UTC)
        clock = time.perf_counter()
        calls_before = self.gateway.calls
        with self.sessions() as s:
            invoice = s.get_one(tables.Invoice, invoice_id)
            organization = s.get_one(tables.Organization, invoice.organization_id)
        attempt = Attempt(lease=lease, invoice=invoice, organization=organization)
        try:
            self._steps(attempt)
        except Exception as e:  # every failure is classified and recorded; none escapes the task
            return self._record_failure(attempt, classify(e), started_at, clock, calls_before)
        finally:
            SYNC_SECONDS.observe(time.perf_counter() - clock)
        with transaction(self.sessions) as s:
            claims.succeed(s, lease)
            claims.record_attempt(
                s,
                invoice_id=invoice_id,
                attempt=lease.attempt,
                step=attempt.step,
                outcome="ok",
                started_at=started_at,
                duration_ms=int((time.perf_counter() - clock) * 1000),
                calls=self.gateway.calls - calls_before,
            )
        return "synced"

    def _record_failure(
        self,
        attempt: Attempt,
        verdict: Verdict,
        started_at: datetime,
        clock: float,
        calls_before: int,
    ) -> str:
        """Store the error and decide: RETRYING with a backoff, FAILED, or paused. Returns which."""
        lease = attempt.lease
        now = datetime.now(UTC)
        refund = False
        if verdict.action == Action.PAUSE:
            state, next_at, refund = (
                "retrying",
                now + timedelta(seconds=self.config.breaker_seconds),
                True,
            )
        elif verdict.action == Action.RETRY and (
            attempt.progress or lease.attempt < self.config.max_attempts
        ):
            refund = attempt.progress
            delay = backoff_seconds(
                1 if attempt.progress else lease.attempt,
                base=self.config.backoff_base_seconds,
                cap=self.config.backoff_cap_seconds,
                retry_after=verdict.retry_after,
                rng=self.rng,
            )
            state, next_at = "retrying", now + timedelta(seconds=delay)
        else:
            state, next_at = "failed", None
        SYNC_ERRORS.labels(verdict.error_class, state).inc()
        log.warning(
            "sync attempt failed",
            extra={
                "invoice_id": lease.invoice_id,
                "step": attempt.step,
                "verdict": verdict.action.value,
                "error_class": verdict.error_class,
                "code": verdict.code,
                "state": state,
            },
        )
        with transaction(self.sessions) as s:
            claims.fail(
                s, lease, verdict, state=state, next_attempt_at=next_at, refund_attempt=refund
            )
            claims.record_attempt(
                s,
                invoice_id=lease.invoice_id,
                attempt=lease.attempt,
                step=attempt.step,
                outcome=verdict.action.value,
                started_at=started_at,
                duration_ms=int((time.perf_counter() - clock) * 1000),
                calls=self.gateway.calls - calls_before,
                verdict=verdict,
            )
        if verdict.action == Action.PAUSE:
            return "paused"
        return "retry" if state == "retrying" else "failed"

    # The steps ---------------------------------------------------------------------------
    def _steps(self, a: Attempt) -> None:
        customer = self.ensure_customer(a)
        may_exist = a.lease.attempt > 1 or a.lease.verify_requested
        remote_id = a.invoice.stripe_invoice_id
        if remote_id is None and may_exist:
            a.step = "lookup"
            found = self.gateway.find_invoice(a.invoice.public_id)
            if found is not None:
                remote_id, a.remote = found.id, found
                self._store_invoice_id(a, remote_id)
        if a.invoice.status == tables.InvoiceStatus.VOID:
            self.void_remote(a, remote_id)
            return
        created = False
        if remote_id is None:
            remote_id = self.create_remote_invoice(a, customer)
            created = True
        elif a.remote is None:
            a.step = "retrieve"
            a.remote = self.gateway.retrieve_invoice(remote_id)
        if a.remote.status == "draft":
            self.add_missing_lines(a, remote_id, listed=not created)
            self.finalize_remote(a, remote_id)
        self.verify_remote(a, remote_id)

    def ensure_customer(self, a: Attempt) -> str:
        org = a.organization
        if org.stripe_customer_id:
            return org.stripe_customer_id
        a.step = "customer"
        # Another invoice of this organization may have created it, or a lost response: look
        # first (one call per organization, ever), then create under the organization's key.
        customer = self.gateway.find_customer(org.public_id) or self.gateway.create_customer(
            org_public_id=org.public_id, name=org.name, email=org.billing_email
        )
        with transaction(self.sessions) as s:
            s.execute(
                sa.text(
                    "UPDATE organizations SET stripe_customer_id = :c WHERE id = :id AND stripe_customer_id IS NULL"
                ),
                {"c": customer, "id": org.id},
            )
            stored = s.execute(
                sa.text("SELECT stripe_customer_id FROM organizations WHERE id = :id"),
                {"id": org.id},
            ).scalar_one()
        return str(stored)

    def create_remote_invoice(self, a: Attempt, customer: str) -> str:
        a.step = "create"
        inv = a.invoice
        assert inv.number is not None and inv.due_date is not None
        a.remote = self.gateway.create_invoice(
            public_id=inv.public_id,
            number=inv.number,
            customer=customer,
            currency=inv.currency.strip(),
            due=inv.due_date,
        )
        a.progress = True
        self._store_invoice_id(a, a.remote.id)
        return str(a.remote.id)

    def _store_invoice_id(self, a: Attempt, remote_id: str) -> None:
        with transaction(self.sessions) as s:
            s.execute(
                sa.text(
                    "UPDATE invoices SET stripe_invoice_id = :r WHERE id = :id AND stripe_invoice_id IS DISTINCT FROM :r"
                ),
                {"r": remote_id, "id": a.invoice.id},
            )

    def _desired(self, a: Attempt) -> list[RemoteLine]:
        with self.sessions() as s:
            items = s.exec(
                select(tables.InvoiceItem)
                .where(col(tables.InvoiceItem.invoice_id) == a.invoice.id)
                .order_by(col(tables.InvoiceItem.id))
            ).all()
        return remote_lines(a.invoice, items)

    def add_missing_lines(self, a: Attempt, remote_id: str, *, listed: bool) -> None:
        a.step = "lines"
        desired = self._desired(a)
        present = self.gateway.list_line_keys(remote_id) if listed else {}
        for index, chunk in enumerate(chunks(desired, self.config.lines_chunk)):
            missing = [line for line in chunk if line.key not in present]
            if not missing:
                continue
            # The same chunk always goes with the same key and the same parameters. Should a
            # chunk be only partly there (it cannot, add_lines is atomic, unless someone edited
            # the draft on Stripe), the remainder gets a key of its own, so the replay rule
            # cannot turn it into an idempotency_error.
            key = f"invoice:{a.invoice.public_id}:lines:{index}"
            if len(missing) != len(chunk):
                key += (
                    ":" + hashlib.sha256("|".join(m.key for m in missing).encode()).hexdigest()[:16]
                )
            a.remote = self.gateway.add_lines(remote_id, missing, key=key)
            a.progress = True

    def finalize_remote(self, a: Attempt, remote_id: str) -> None:
        a.step = "finalize"
        a.remote = self.gateway.finalize(remote_id, public_id=a.invoice.public_id)
        a.progress = True

    def verify_remote(self, a: Attempt, remote_id: str) -> None:
        """Stripe's total and line count must equal ours, or the invoice is FAILED (MISMATCH)."""
        a.step = "verify"
        desired = self._desired(a)
        remote = a.remote
        count = getattr(getattr(remote, "lines", None), "total_count", None)
        if a.lease.verify_requested or count is None:
            keys = self.gateway.list_line_keys(remote_id)
            count = len(keys)
            self._store_line_ids(a, keys)
        if remote.total != a.invoice.total_cents or count != len(desired):
            raise Mismatch(
                f"Stripe invoice {remote_id} ({remote.status}) holds {count} lines totalling "
                f"{remote.total}; ours has {len(desired)} lines totalling {a.invoice.total_cents}. "
                "A finalized Stripe invoice cannot be edited: void it there and resync."
            )

    def _store_line_ids(self, a: Attempt, keys: dict[str, str]) -> None:
        pairs = [(k, v) for k, v in keys.items() if k.startswith("li_")]
        if not pairs:
            return
        with transaction(self.sessions) as s:
            s.execute(
                sa.text(
                    "UPDATE invoice_items i SET stripe_line_id = v.remote FROM (SELECT unnest(CAST(:k AS text[])) AS pid,"
                    " unnest(CAST(:v AS text[])) AS remote) v WHERE i.public_id = v.pid AND i.invoice_id = :inv"
                    " AND i.stripe_line_id IS DISTINCT FROM v.remote"
                ),
                {"k": [p for p, _ in pairs], "v": [r for _, r in pairs], "inv": a.invoice.id},
            )

    def void_remote(self, a: Attempt, remote_id: str | None) -> None:
        """Voided here: void it on Stripe too. Never on Stripe: nothing to do."""
        if remote_id is None:
            return
        a.step = "void"
        remote = a.remote or self.gateway.retrieve_invoice(remote_id)
        if remote.status == "draft":
            # Stripe voids only finalized invoices; a draft that was never sent is finalized
            # (auto_advance off: nothing is e-mailed) and voided at once.
            remote = self.gateway.finalize(remote_id, public_id=a.invoice.public_id)
        if remote.status in ("open", "uncollectible"):
            self.gateway.void(remote_id, public_id=a.invoice.public_id)
        elif remote.status == "paid":
            raise Mismatch(f"Stripe invoice {remote_id} is paid; it cannot be voided there")
