"""Stripe-looking random ids (`cus_…`, `in_…`, `req_…`)."""

from __future__ import annotations

import secrets
import string

_ALPHABET = string.ascii_letters + string.digits


def new_id(prefix: str, length: int = 24) -> str:
    return prefix + "".join(secrets.choice(_ALPHABET) for _ in range(length))


def new_request_id() -> str:
    return new_id("req_", 14)


def new_invoice_prefix() -> str:
    return "".join(secrets.choice(string.ascii_uppercase + string.digits) for _ in range(8))
