"""Webhook events from the mock, signed as Stripe signs them and delivered as Stripe delivers
them: at least once, not in order, sometimes late.

`Stripe-Signature: t=<unix>,v1=<hex>[,v1=<hex>...]`, each v1 an HMAC-SHA256 of `t.payload`
with one endpoint secret (several during a rotation). A delivery that does not get a 2xx is
retried with backoff, as Stripe retries for up to three days. Chaos options duplicate events
and hold them back a random time, which also reorders them.
"""

from __future__ import annotations

import hashlib
import heapq
import hmac
import itertools
import json
import logging
import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from .ids import new_id

logger = logging.getLogger("stripe_mock.webhooks")

API_VERSION = "2025-09-30.clover"
MAX_DELIVERY_ATTEMPTS = 8


@dataclass
class WebhookSettings:
    url: str | None = None
    secrets: list[str] = field(default_factory=list)
    duplicate_probability: float = 0.0
    max_delay_seconds: float = 0.0
    seed: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "url": self.url,
            "secrets": len(self.secrets),
            "duplicate_probability": self.duplicate_probability,
            "max_delay_seconds": self.max_delay_seconds,
        }


def sign(payload: str, secrets: list[str], *, timestamp: int) -> str:
    """The Stripe-Signature header for `payload`, one v1 per secret."""
    parts = [f"t={timestamp}"]
    for secret in secrets:
        mac = hmac.new(secret.encode(), f"{timestamp}.{payload}".encode(), hashlib.sha256)
        parts.append(f"v1={mac.hexdigest()}")
    return ",".join(parts)


def event(
    event_type: str, obj: dict[str, Any], *, request_id: str | None, key: str | None
) -> dict[str, Any]:
    return {
        "id": new_id("evt_"),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()),
        "data": {"object": obj},
        "livemode": False,
        "pending_webhooks": 1,
        "request": {"id": request_id, "idempotency_key": key},
        "type": event_type,
    }


class Deliveries:
    """A background thread posting events when they are due; `flush` delivers what is left."""

    def __init__(self, settings: WebhookSettings) -> None:
        self.settings = settings
        self._rng = random.Random(settings.seed)
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, dict[str, Any], int]] = []
        self._seq = itertools.count()
        self._in_flight = 0
        self.delivered = 0
        self.failed = 0
        self.duplicated = 0
        self._thread = threading.Thread(target=self._run, name="mock-webhooks", daemon=True)
        self._thread.start()

    def configure(self, settings: WebhookSettings) -> None:
        with self._cond:
            self.settings = settings
            self._rng = random.Random(settings.seed)

    def send(self, events: list[dict[str, Any]]) -> None:
        with self._cond:
            if not self.settings.url:
                return
            now = time.monotonic()
            for evt in events:
                copies = 1
                if self._rng.random() < self.settings.duplicate_probability:
                    copies = 2
                    self.duplicated += 1
                for _ in range(copies):
                    delay = self._rng.uniform(0, self.settings.max_delay_seconds)
                    heapq.heappush(self._heap, (now + delay, next(self._seq), evt, 0))
            self._cond.notify_all()

    def flush(self, timeout: float = 30.0) -> bool:
        """Make every held event due now and wait until all are delivered (or given up)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._heap = [(0.0, seq, evt, n) for _, seq, evt, n in self._heap]
            heapq.heapify(self._heap)
            self._cond.notify_all()
            while self._heap or self._in_flight:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(left)
        return True

    def stats(self) -> dict[str, Any]:
        with self._cond:
            return {
                "pending": len(self._heap) + self._in_flight,
                "delivered": self.delivered,
                "failed": self.failed,
                "duplicated": self.duplicated,
                **self.settings.describe(),
            }

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    wait = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(wait)
                _, seq, evt, attempts = heapq.heappop(self._heap)
                self._in_flight += 1
                settings = self.settings
            ok = self._post(settings, evt)
            with self._cond:
                self._in_flight -= 1
                if ok:
                    self.delivered += 1
                elif attempts + 1 < MAX_DELIVERY_ATTEMPTS:
                    retry_at = time.monotonic() + min(30.0, 0.5 * 2**attempts)
                    heapq.heappush(self._heap, (retry_at, seq, evt, attempts + 1))
                else:
                    self.failed += 1
                self._cond.notify_all()

    def _post(self, settings: WebhookSettings, evt: dict[str, Any]) -> bool:
        if not settings.url:
            return True
        payload = json.dumps(evt, separators=(",", ":"))
        header = sign(payload, settings.secrets, timestamp=int(time.time()))
        try:
            response = httpx.post(
                settings.url,
                content=payload.encode(),
                headers={"Content-Type": "application/json", "Stripe-Signature": header},
                timeout=10,
            )
        except httpx.HTTPError as e:
            logger.warning("webhook delivery of %s failed: %s", evt["id"], e)
            return False
        if response.status_code >= 300:
            logger.warning(
                "webhook %s refused with %s: %s", evt["id"], response.status_code, response.text
            )
        return response.status_code < 300
