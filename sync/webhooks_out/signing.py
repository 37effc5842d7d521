"""The signature on every delivery, after Stripe's scheme: `Billing-Signature: t=<unix>,
v1=<hex HMAC-SHA256 of "<t>.<body>" keyed by the endpoint's secret>`. The timestamp inside the
signed text lets a receiver refuse a replayed old delivery (`verify`'s tolerance); a receiver
that knows two secrets during a rotation tries each (several v1= entries are accepted too)."""

from __future__ import annotations

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

HEADER = "Billing-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


def body(event_id: str, event_type: str, created: datetime, payload: dict[str, Any]) -> bytes:
    """The JSON sent for an event: the same bytes on every attempt (keys sorted)."""
    doc = {
        "id": event_id,
        "type": event_type,
        "created": int(created.timestamp()),
        "data": {"object": payload},
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), default=str).encode()


def _mac(secret: str, timestamp: int, raw: bytes) -> str:
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + raw, hashlib.sha256).hexdigest()


def header(secret: str, timestamp: int, raw: bytes) -> str:
    return f"t={timestamp},v1={_mac(secret, timestamp, raw)}"


def verify(
    secret: str,
    value: str,
    raw: bytes,
    *,
    now: float,
    tolerance: float = DEFAULT_TOLERANCE_SECONDS,
) -> bool:
    """True when `value` (the header) signs `raw` with `secret` and its timestamp is within
    `tolerance` seconds of `now`. Compares in constant time."""
    timestamp: int | None = None
    signatures: list[str] = []
    for part in value.split(","):
        key, _, v = part.strip().partition("=")
        if key == "t" and v.isdigit():
            timestamp = int(v)
        elif key == "v1":
            signatures.append(v)
    if timestamp is None or not signatures or abs(now - timestamp) > tolerance:
        return False
    expected = _mac(secret, timestamp, raw)
    return any(hmac.compare_digest(expected, s) for s in signatures)
