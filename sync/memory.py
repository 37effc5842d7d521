"""What the sync remembers about an invoice beyond its ids: idempotency key generations and the
remote invoices it gave up on purpose (`invoice_sync.key_generations`,
`invoice_sync.replaced_stripe_invoice_ids`).

Key generations. Stripe stores the result of a request for its idempotency key, 500s
included: a 500 after Stripe began executing comes back on every retry with that key
(`Idempotent-Replayed: true`), so retrying with it can never get past it. A 500 does not say
whether it was saved, so after any 5xx on one of our POSTs the step's generation is bumped at
once (issue 24: waiting for the replay to prove it spent an attempt per saved 500). The next
attempt first reads the remote state (the step may have happened: then it is skipped) and
otherwise sends the step under `invoice:{id}:finalize:2`. A new key is safe because of that
read: every step looks up what an earlier attempt may have left before it creates or adds.
Generation 1 is the plain key, so invoices that never met a 5xx keep the keys they always had.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

REPLAYED_500 = "idempotent_replayed_500"
# The steps whose POSTs carry an idempotency key (the names of push.Progress.step).
KEYED_STEPS = ("customer", "create", "lines", "finalize", "void", "pay")
# Which step's key each of our POSTs carries (sync.stripe_client endpoint labels).
STEP_OF_POST = {
    "POST /v1/customers": "customer",
    "POST /v1/invoices": "create",
    "POST /v1/invoices/{id}/add_lines": "lines",
    "POST /v1/invoices/{id}/finalize": "finalize",
    "POST /v1/invoices/{id}/void": "void",
    "POST /v1/invoices/{id}/pay": "pay",
}


@dataclass(frozen=True)
class Memory:
    generations: dict[str, int] = field(default_factory=dict)
    replaced: frozenset[str] = frozenset()

    def key(self, step: str, base: str) -> str:
        generation = self.generations.get(step, 1)
        return base if generation <= 1 else f"{base}:{generation}"


def _json(value: Any, default: Any) -> Any:
    if value is None:
        return default
    return json.loads(value) if isinstance(value, str) else value


def load(session: Session, invoice_id: int) -> Memory:
    row = session.execute(
        sa.text(
            "SELECT key_generations, replaced_stripe_invoice_ids FROM invoice_sync"
            " WHERE invoice_id = :id"
        ),
        {"id": invoice_id},
    ).first()
    if row is None:
        return Memory()
    generations = {str(k): int(v) for k, v in _json(row[0], {}).items()}
    return Memory(generations=generations, replaced=frozenset(_json(row[1], [])))


def spent_step(failed_post: str | None) -> str | None:
    """The step whose key a POST answered with a 5xx has spent (`StripeGateway.failed_post`)."""
    return STEP_OF_POST.get(failed_post or "")


def bump(session: Session, invoice_id: int, step: str) -> int:
    """Move `step` to its next key generation; returns it. Caller commits."""
    row = session.execute(
        sa.text(
            """
            UPDATE invoice_sync SET key_generations = key_generations || jsonb_build_object(
                CAST(:step AS text), coalesce((key_generations ->> CAST(:step AS text))::int, 1) + 1)
            WHERE invoice_id = :id
            RETURNING (key_generations ->> CAST(:step AS text))::int
            """
        ),
        {"id": invoice_id, "step": step},
    ).first()
    return int(row[0]) if row else 0
