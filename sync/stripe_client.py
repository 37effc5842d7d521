"""Our Stripe calls, through the official SDK, each behind the breaker and the shared rate limit.

SDK retries are off (max_network_retries=0): our policy decides what is retried and when, with
state in Postgres. Every POST carries an idempotency key that we derive from our own ids; without
one the SDK invents a random key per call, and a retried create would make a second invoice.
"""

from __future__ import annotations

import calendar
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar, cast

import stripe

if TYPE_CHECKING:
    from stripe.params import InvoiceAddLinesParams

from sync.breaker import Breaker
from sync.classify import BreakerOpen
from sync.grouping import RemoteLine
from sync.limiter import RateLimiter
from sync.metrics import STRIPE_CALLS

T = TypeVar("T")


def unix(day: date) -> int:
    """00:00 UTC of a calendar day, as Stripe's unix seconds."""
    return calendar.timegm(day.timetuple())


def make_client(api_key: str, api_base: str, *, timeout: float) -> stripe.StripeClient:
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        max_network_retries=0,
        http_client=stripe.RequestsClient(timeout=timeout),
    )


@dataclass
class Gateway:
    client: stripe.StripeClient
    limiter: RateLimiter
    breaker: Breaker
    calls: int = 0

    def _call(self, endpoint: str, fn: Callable[[], T]) -> T:
        if not self.breaker.allow():
            raise BreakerOpen("syncing is paused: Stripe rejected our API key")
        self.limiter.acquire()
        self.calls += 1
        try:
            result = fn()
        except stripe.AuthenticationError:
            self.breaker.record_auth_failure()
            STRIPE_CALLS.labels(endpoint, "auth_error").inc()
            raise
        except stripe.StripeError as e:
            STRIPE_CALLS.labels(endpoint, type(e).__name__).inc()
            raise
        self.breaker.record_success()
        STRIPE_CALLS.labels(endpoint, "ok").inc()
        return result

    # Customers ---------------------------------------------------------------------------
    def find_customer(self, org_public_id: str) -> str | None:
        found = self._call(
            "GET /v1/customers/search",
            lambda: self.client.v1.customers.search(
                params={"query": f"metadata['org_id']:'{org_public_id}'"}
            ),
        )
        return found.data[0].id if found.data else None

    def create_customer(self, *, org_public_id: str, name: str, email: str) -> str:
        customer = self._call(
            "POST /v1/customers",
            lambda: self.client.v1.customers.create(
                params={"name": name, "email": email, "metadata": {"org_id": org_public_id}},
                options={"idempotency_key": f"org:{org_public_id}:customer"},
            ),
        )
        return customer.id

    # Invoices ----------------------------------------------------------------------------
    def find_invoice(self, invoice_public_id: str) -> stripe.Invoice | None:
        found = self._call(
            "GET /v1/invoices/search",
            lambda: self.client.v1.invoices.search(
                params={"query": f"metadata['invoice_id']:'{invoice_public_id}'"}
            ),
        )
        return found.data[0] if found.data else None

    def create_invoice(
        self, *, public_id: str, number: str, customer: str, currency: str, due: date
    ) -> stripe.Invoice:
        return self._call(
            "POST /v1/invoices",
            lambda: self.client.v1.invoices.create(
                params={
                    "customer": customer,
                    "currency": currency.lower(),
                    # We decide when it is finalized; Stripe must not advance it on its own.
                    "auto_advance": False,
                    "collection_method": "send_invoice",
                    "due_date": unix(due),
                    "pending_invoice_items_behavior": "exclude",
                    "metadata": {"invoice_id": public_id, "invoice_number": number},
                },
                options={"idempotency_key": f"invoice:{public_id}:create"},
            ),
        )

    def retrieve_invoice(self, remote_id: str) -> stripe.Invoice:
        return self._call(
            "GET /v1/invoices/{id}", lambda: self.client.v1.invoices.retrieve(remote_id)
        )

    def list_line_keys(self, remote_id: str) -> dict[str, str]:
        """metadata key (line_item_id or group) -> remote line id, for every line."""
        keys: dict[str, str] = {}
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": 100}
            if after:
                params["starting_after"] = after
            page = self._call(
                "GET /v1/invoices/{id}/lines",
                lambda p=params: self.client.v1.invoices.line_items.list(remote_id, params=p),  # type: ignore[misc]
            )
            for line in page.data:
                meta = line.metadata.to_dict() if line.metadata else {}
                key = meta.get("line_item_id") or meta.get("group")
                if key:
                    keys[key] = line.id
            if not page.has_more or not page.data:
                return keys
            after = page.data[-1].id

    def add_lines(self, remote_id: str, lines: list[RemoteLine], *, key: str) -> stripe.Invoice:
        params: dict[str, Any] = {
            "lines": [
                {
                    "amount": line.amount,
                    "description": line.description,
                    "period": {"start": unix(line.period_start), "end": unix(line.period_end)},
                    "metadata": line.metadata,
                }
                for line in lines
            ]
        }
        return self._call(
            "POST /v1/invoices/{id}/add_lines",
            lambda: self.client.v1.invoices.add_lines(
                remote_id,
                params=cast("InvoiceAddLinesParams", params),
                options={"idempotency_key": key},
            ),
        )

    def finalize(self, remote_id: str, *, public_id: str) -> stripe.Invoice:
        return self._call(
            "POST /v1/invoices/{id}/finalize",
            lambda: self.client.v1.invoices.finalize_invoice(
                remote_id,
                params={"auto_advance": False},
                options={"idempotency_key": f"invoice:{public_id}:finalize"},
            ),
        )

    def void(self, remote_id: str, *, public_id: str) -> stripe.Invoice:
        return self._call(
            "POST /v1/invoices/{id}/void",
            lambda: self.client.v1.invoices.void_invoice(
                remote_id, options={"idempotency_key": f"invoice:{public_id}:void"}
            ),
        )
