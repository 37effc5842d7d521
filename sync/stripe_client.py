"""Our Stripe calls, through the official SDK, each behind the breaker and the shared rate limit.

- SDK retries are off (`max_network_retries=0`): our policy decides what is retried and when,
  with the state in Postgres (`next_attempt_at`), not in a sleeping worker.
- Every POST carries an idempotency key derived from our ids (`sync.keys`). Without one the SDK
  invents a random key per call (stripe-python `_api_requestor.py`), and a retried create would
  make a second invoice.
- Answers come back as small frozen dataclasses, so the steps never depend on SDK types.
"""

from __future__ import annotations

import calendar
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING, Any, TypeVar, cast

import requests
import stripe

from sync import keys
from sync.breaker import Breaker
from sync.errors import BreakerOpen
from sync.grouping import GROUP_KEY, LINE_KEY, RemoteLine
from sync.limiter import RateLimiter
from sync.metrics import STRIPE_CALL_SECONDS, STRIPE_CALLS

if TYPE_CHECKING:
    from stripe.params import CreditNoteCreateParams, InvoiceAddLinesParams, InvoiceCreateParams

T = TypeVar("T")
LIST_PAGE = 100  # Stripe's largest page


def unix(day: date) -> int:
    """00:00 UTC of a calendar day, in Stripe's unix seconds."""
    return calendar.timegm(day.timetuple())


class _RequestsClient(stripe.RequestsClient):
    """The SDK's requests client (a session per thread, as its own), with sessions that take
    their proxy from the client instead of reading the environment on every request."""

    def _request_internal(self, *args: Any, **kwargs: Any) -> Any:
        if getattr(self._thread_local, "session", None) is None:
            session = requests.Session()
            session.trust_env = False
            self._thread_local.session = session
        return super()._request_internal(*args, **kwargs)


def make_client(
    api_key: str, api_base: str, *, timeout: float, connect_timeout: float = 5.0
) -> stripe.StripeClient:
    # requests looks the proxy variables up in the whole environment on every request
    # (`Session.merge_environment_settings`), which was 13% of a sync worker's CPU in a profile
    # of the close's sync (tests/test_rate_limit.py). The client talks to one host, so the
    # answer is decided once here: the environment's proxy for it, unless NO_PROXY exempts it.
    host = urllib.parse.urlsplit(api_base).hostname or ""
    proxies = {} if urllib.request.proxy_bypass(host) else urllib.request.getproxies()
    proxy = {k: v for k, v in proxies.items() if k in ("http", "https")}
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": api_base},
        max_network_retries=0,
        http_client=_RequestsClient(
            timeout=(connect_timeout, timeout), proxy=cast(Any, proxy) or None
        ),
    )


@dataclass(frozen=True)
class RemoteLineRef:
    """A line on Stripe, and the key we gave it (metadata line_item_id or group), if any."""

    id: str
    key: str | None
    key_field: str | None
    amount: int


@dataclass(frozen=True)
class RemoteInvoice:
    id: str
    status: str
    total: int
    currency: str
    customer: str | None
    line_count: int
    # The lines embedded in the answer: Stripe embeds only the first page (10) of them.
    lines: tuple[RemoteLineRef, ...]
    metadata: Mapping[str, str]
    # More lines than embedded: counting them takes paging `GET /v1/invoices/{id}/lines`
    # (Stripe's lines list declares no total_count).
    lines_has_more: bool = False
    created: int = 0
    # Where the customer pays, and the PDF: Stripe sets both once the invoice is finalized.
    hosted_invoice_url: str | None = None
    invoice_pdf: str | None = None


def _plain(obj: Any) -> dict[str, Any]:
    """SDK objects (StripeObject is no longer a dict in stripe-python 16) as plain dicts."""
    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    return dict(data or {})


def _meta(obj: Mapping[str, Any]) -> dict[str, str]:
    return {str(k): str(v) for k, v in dict(obj.get("metadata") or {}).items()}


def _line(raw: Any) -> RemoteLineRef:
    obj = _plain(raw)
    meta = _meta(obj)
    field_name = LINE_KEY if LINE_KEY in meta else GROUP_KEY if GROUP_KEY in meta else None
    return RemoteLineRef(
        id=str(obj["id"]),
        key=meta.get(field_name) if field_name else None,
        key_field=field_name,
        amount=int(obj.get("amount") or 0),
    )


def _invoice(raw: Any) -> RemoteInvoice:
    obj = _plain(raw)
    lines = obj.get("lines") or {}
    data = [_line(item) for item in (lines.get("data") or [])]
    count = lines.get("total_count")
    return RemoteInvoice(
        lines_has_more=bool(lines.get("has_more")),
        created=int(obj.get("created") or 0),
        id=str(obj["id"]),
        status=str(obj.get("status")),
        total=int(obj.get("total") or 0),
        currency=str(obj.get("currency") or ""),
        customer=obj.get("customer") if isinstance(obj.get("customer"), str) else None,
        line_count=int(count) if count is not None else len(data),
        lines=tuple(data),
        metadata=_meta(obj),
        hosted_invoice_url=_url(obj.get("hosted_invoice_url")),
        invoice_pdf=_url(obj.get("invoice_pdf")),
    )


def _url(value: Any) -> str | None:
    return value if isinstance(value, str) and value.startswith(("https://", "http://")) else None


def _quote(value: str) -> str:
    """A value inside a Stripe search query's single quotes."""
    return value.replace("\\", "\\\\").replace("'", "\\'")


@dataclass
class StripeGateway:
    """The calls the sync makes. One per attempt (`for_attempt`), so `calls` counts that
    attempt's requests; the SDK client, limiter and breaker are shared by the process."""

    client: stripe.StripeClient
    limiter: RateLimiter
    breaker: Breaker
    calls: int = field(default=0)
    # The endpoint of this attempt's last POST that Stripe answered with a 5xx: Stripe saves
    # such an answer for the request's idempotency key (sync.memory), so that key is spent.
    failed_post: str | None = field(default=None)

    def for_attempt(self) -> StripeGateway:
        return StripeGateway(client=self.client, limiter=self.limiter, breaker=self.breaker)

    def _call(self, endpoint: str, fn: Callable[[], T]) -> T:
        if self.breaker.is_open():
            raise BreakerOpen("syncing is paused: Stripe rejected our API key (breaker open)")
        self.limiter.acquire()
        self.calls += 1
        started = time.perf_counter()
        try:
            result = fn()
        except stripe.AuthenticationError:
            self.breaker.trip()
            STRIPE_CALLS.labels(endpoint, "AuthenticationError").inc()
            raise
        except stripe.StripeError as e:
            STRIPE_CALLS.labels(endpoint, type(e).__name__).inc()
            if endpoint.startswith("POST ") and (e.http_status or 0) >= 500:
                self.failed_post = endpoint
            if e.http_status is not None and 400 <= e.http_status < 500:
                self.breaker.record_success()  # Stripe accepted the key, then refused the request
            raise
        finally:
            STRIPE_CALL_SECONDS.labels(endpoint).observe(time.perf_counter() - started)
        STRIPE_CALLS.labels(endpoint, "ok").inc()
        self.breaker.record_success()
        return result

    # Customers ---------------------------------------------------------------------------
    def find_customer(self, org_public_id: str) -> str | None:
        found = self._call(
            "GET /v1/customers/search",
            lambda: self.client.v1.customers.search(
                params={"query": f"metadata['org_id']:'{_quote(org_public_id)}'"}
            ),
        )
        return str(found.data[0].id) if found.data else None

    def create_customer(
        self, *, org_public_id: str, name: str, email: str, key: str | None = None
    ) -> str:
        customer = self._call(
            "POST /v1/customers",
            lambda: self.client.v1.customers.create(
                params={"name": name, "email": email, "metadata": {"org_id": org_public_id}},
                options={"idempotency_key": key or keys.customer(org_public_id)},
            ),
        )
        return str(customer.id)

    def list_customers(self, email: str) -> list[tuple[str, dict[str, str]]]:
        """(id, metadata) of every customer with this e-mail: a list, so consistent at once."""
        out: list[tuple[str, dict[str, str]]] = []
        params: dict[str, Any] = {"email": email, "limit": LIST_PAGE}
        while True:
            page = self._call(
                "GET /v1/customers",
                lambda p=dict(params): self.client.v1.customers.list(params=p),  # type: ignore[misc]
            )
            batch = [(str(c.id), _meta(_plain(c))) for c in page.data]
            out.extend(batch)
            if not page.has_more or not batch:
                return out
            params["starting_after"] = batch[-1][0]

    def list_invoices(self, customer: str, *, created_gte: int) -> list[RemoteInvoice]:
        """The customer's invoices created since `created_gte`, every page (consistent)."""
        out: list[RemoteInvoice] = []
        params: dict[str, Any] = {
            "customer": customer,
            "created": {"gte": created_gte},
            "limit": LIST_PAGE,
        }
        while True:
            page = self._call(
                "GET /v1/invoices",
                lambda p=dict(params): self.client.v1.invoices.list(params=p),  # type: ignore[misc]
            )
            batch = [_invoice(inv) for inv in page.data]
            out.extend(batch)
            if not page.has_more or not batch:
                return out
            params["starting_after"] = batch[-1].id

    # Invoices ----------------------------------------------------------------------------
    def find_invoices(self, invoice_public_id: str) -> list[RemoteInvoice]:
        found = self._call(
            "GET /v1/invoices/search",
            lambda: self.client.v1.invoices.search(
                params={"query": f"metadata['invoice_id']:'{_quote(invoice_public_id)}'"}
            ),
        )
        return [_invoice(inv) for inv in found.data]

    def create_invoice(
        self,
        *,
        public_id: str,
        number: str,
        customer: str,
        currency: str,
        due: date,
        key: str | None = None,
    ) -> RemoteInvoice:
        params: dict[str, Any] = {
            "customer": customer,
            "currency": currency.strip().lower(),
            # We decide when it is finalized; Stripe must not advance (finalize, e-mail) it on
            # its own an hour after creation, which it does to drafts with auto_advance on.
            "auto_advance": False,
            "collection_method": "send_invoice",
            "due_date": unix(due),
            # Only the lines we add: never sweep the customer's other pending invoice items in.
            "pending_invoice_items_behavior": "exclude",
            "metadata": {"invoice_id": public_id, "invoice_number": number},
        }
        created = self._call(
            "POST /v1/invoices",
            lambda: self.client.v1.invoices.create(
                params=cast("InvoiceCreateParams", params),
                options={"idempotency_key": key or keys.create(public_id)},
            ),
        )
        return _invoice(created)

    def retrieve_invoice(self, remote_id: str) -> RemoteInvoice:
        return _invoice(
            self._call("GET /v1/invoices/{id}", lambda: self.client.v1.invoices.retrieve(remote_id))
        )

    def list_lines(self, remote_id: str) -> list[RemoteLineRef]:
        """Every line of the invoice, page by page (a call per 100 lines)."""
        out: list[RemoteLineRef] = []
        after: str | None = None
        while True:
            params: dict[str, Any] = {"limit": LIST_PAGE}
            if after:
                params["starting_after"] = after
            page = self._call(
                "GET /v1/invoices/{id}/lines",
                lambda p=params: self.client.v1.invoices.line_items.list(remote_id, params=p),  # type: ignore[misc]
            )
            batch = [_line(line) for line in page.data]
            out.extend(batch)
            if not page.has_more or not batch:
                return out
            after = batch[-1].id

    def add_lines(self, remote_id: str, lines: list[RemoteLine], *, key: str) -> RemoteInvoice:
        params: dict[str, Any] = {
            "lines": [
                {
                    # The exact amount in minor units: Stripe's total is the sum of ours.
                    "amount": line.amount,
                    "description": line.description,
                    "period": {"start": unix(line.period_start), "end": unix(line.period_end)},
                    "metadata": line.metadata,
                }
                for line in lines
            ]
        }
        return _invoice(
            self._call(
                "POST /v1/invoices/{id}/add_lines",
                lambda: self.client.v1.invoices.add_lines(
                    remote_id,
                    params=cast("InvoiceAddLinesParams", params),
                    options={"idempotency_key": key},
                ),
            )
        )

    def finalize(self, remote_id: str, *, public_id: str, key: str | None = None) -> RemoteInvoice:
        return _invoice(
            self._call(
                "POST /v1/invoices/{id}/finalize",
                lambda: self.client.v1.invoices.finalize_invoice(
                    remote_id,
                    # Finalized but not sent: with auto_advance off Stripe e-mails nothing and
                    # attempts no collection; the invoice e-mail is a decision for later.
                    params={"auto_advance": False},
                    options={"idempotency_key": key or keys.finalize(public_id)},
                ),
            )
        )

    def void(self, remote_id: str, *, public_id: str, key: str | None = None) -> RemoteInvoice:
        return _invoice(
            self._call(
                "POST /v1/invoices/{id}/void",
                lambda: self.client.v1.invoices.void_invoice(
                    remote_id, options={"idempotency_key": key or keys.void(public_id)}
                ),
            )
        )

    def pay_out_of_band(self, remote_id: str, *, key: str) -> RemoteInvoice:
        """Tell Stripe the invoice was paid outside Stripe: recorded, nothing charged."""
        return _invoice(
            self._call(
                "POST /v1/invoices/{id}/pay",
                lambda: self.client.v1.invoices.pay(
                    remote_id, params={"paid_out_of_band": True}, options={"idempotency_key": key}
                ),
            )
        )

    # Credit notes ------------------------------------------------------------------------
    def list_credit_notes(self, remote_invoice_id: str) -> list[RemoteCreditNote]:
        """Every credit note of a Stripe invoice (a list: consistent, unlike search)."""
        out: list[RemoteCreditNote] = []
        params: dict[str, Any] = {"invoice": remote_invoice_id, "limit": LIST_PAGE}
        while True:
            page = self._call(
                "GET /v1/credit_notes",
                lambda p=dict(params): self.client.v1.credit_notes.list(params=p),  # type: ignore[misc]
            )
            batch = [_credit_note(n) for n in page.data]
            out.extend(batch)
            if not page.has_more or not batch:
                return out
            params["starting_after"] = batch[-1].id

    def create_credit_note(self, params: CreditNoteCreateParams, *, key: str) -> RemoteCreditNote:
        return _credit_note(
            self._call(
                "POST /v1/credit_notes",
                lambda: self.client.v1.credit_notes.create(
                    params=params, options={"idempotency_key": key}
                ),
            )
        )

    def void_credit_note(self, remote_id: str, *, key: str) -> RemoteCreditNote:
        return _credit_note(
            self._call(
                "POST /v1/credit_notes/{id}/void",
                lambda: self.client.v1.credit_notes.void_credit_note(
                    remote_id, options={"idempotency_key": key}
                ),
            )
        )


@dataclass(frozen=True)
class RemoteCreditNote:
    id: str
    status: str
    total: int
    metadata: dict[str, str]


def _credit_note(raw: Any) -> RemoteCreditNote:
    obj = _plain(raw)
    return RemoteCreditNote(
        id=str(obj["id"]),
        status=str(obj.get("status")),
        total=int(obj.get("total") or 0),
        metadata=_meta(obj),
    )
