"""Idempotency keys, one per step, derived from our own public ids.

Stripe replays the first answer to a retried POST that carries the same key and the same
parameters, for at least 24 hours. Deriving the key from the invoice (never letting the SDK
invent a random one per call) is what makes a retried create return the first invoice instead
of a second one. A key that names the step also means two different steps can never collide.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable


def customer(org_public_id: str) -> str:
    return f"org:{org_public_id}:customer"


def create(invoice_public_id: str) -> str:
    return f"invoice:{invoice_public_id}:create"


def lines(invoice_public_id: str, chunk: int, *, subset: Iterable[str] | None = None) -> str:
    """The key of chunk `chunk` of the invoice's lines. A chunk sent again only in part (some of
    its lines are already on Stripe) gets a key of its own, derived from exactly those lines:
    reusing the chunk's key with other parameters would be an idempotency_error."""
    key = f"invoice:{invoice_public_id}:lines:{chunk}"
    if subset is not None:
        digest = hashlib.sha256("|".join(subset).encode()).hexdigest()[:16]
        key += f":{digest}"
    return key


def finalize(invoice_public_id: str) -> str:
    return f"invoice:{invoice_public_id}:finalize"


def void(invoice_public_id: str) -> str:
    return f"invoice:{invoice_public_id}:void"


def pay(invoice_public_id: str) -> str:
    return f"invoice:{invoice_public_id}:pay"


def credit_note_create(credit_note_public_id: str) -> str:
    return f"credit_note:{credit_note_public_id}:create"


def credit_note_void(credit_note_public_id: str) -> str:
    return f"credit_note:{credit_note_public_id}:void"
