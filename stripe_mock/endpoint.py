"""One Stripe API endpoint as an ASGI app: auth, faults, params, idempotency, execution.

The order mirrors what a client can observe from Stripe: injected 500/429/401 and timeouts
happen before execution and leave no trace; `slow` and `lost_response` happen after it, so
the object exists and the idempotency key holds the result. A `saved_500` is what Stripe does
when it fails after it began executing: the 500 is the key's result, replayed to every retry
with the same key (`Idempotent-Replayed: true`), whether the change happened or not.

Every request is checked against Stripe's spec (`spec.check_request`) before anything else
happens to it, and every answer against the response schema (`spec.check_response`).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from . import errors, shapes, spec, webhooks
from .auth import api_key
from .drop import Connections, drop_connection
from .faults import Rule
from .forms import FormError, decode_form
from .idempotency import Replay, StoredResponse
from .operations import JSON, Operation
from .params import Reader
from .state import MockState
from .stats import LOST, TIMEOUT
from .store import CreditNote, Store

logger = logging.getLogger("stripe_mock")

REQUEST_ID = "stripe_mock.request_id"


def encode(body: JSON) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode("utf-8")


async def send_json(
    send: Send, status: int, body: bytes, headers: Sequence[tuple[str, str]] = ()
) -> None:
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode("latin-1")),
        *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers),
    ]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class ApiEndpoint:
    def __init__(self, operation: Operation, state: MockState, connections: Connections) -> None:
        self.operation = operation
        self.state = state
        self.connections = connections

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = Headers(scope=scope)
        try:
            api_key(headers.get("authorization"))
            if not self.state.rate_limit.admit():
                self.state.stats.record_rate_limited()
                raise errors.rate_limit_exceeded()
            rule = self._pick_fault()
            if rule is not None and rule.fault == "timeout":
                await asyncio.sleep(rule.seconds)
                self.state.stats.record(self.operation.endpoint, TIMEOUT)
                return await drop_connection(self.connections, scope, receive, send)
            params = await _params(Request(scope, receive))
            spec.check_request(self.operation.endpoint, params)
        except errors.StripeError as e:
            return await self._fail(send, e)

        key = headers.get("idempotency-key") if self.operation.method == "POST" else None
        saved_500 = rule is not None and rule.fault == "saved_500"
        if key is None:
            if saved_500:
                assert rule is not None
                if rule.executed:
                    self._execute(scope, params, key=None)
                return await self._fail(send, errors.api_error_500())
            response = self._execute(scope, params, key=None)
            if isinstance(response, errors.ParamError):
                return await self._fail(send, response)
            return await self._deliver(scope, receive, send, rule, response, replayed=False)

        try:
            claim = self.state.idempotency.begin(key, f"POST {scope['path']}", params)
        except errors.StripeError as e:
            return await self._fail(send, e)
        if isinstance(claim, Replay):
            if rule is not None and rule.fault == "slow":
                await asyncio.sleep(rule.seconds)
            return await self._deliver(scope, receive, send, rule, claim.response, replayed=True)

        if saved_500:
            assert rule is not None
            if rule.executed:
                self._execute(scope, params, key=key)
            error = errors.api_error_500()
            stored = StoredResponse(
                error.status, encode(error.body()), (), str(scope.get(REQUEST_ID, ""))
            )
            self.state.idempotency.complete(key, stored)
            return await self._deliver(scope, receive, send, None, stored, replayed=False)

        response = self._execute(scope, params, key=key)
        if isinstance(response, errors.ParamError):
            # Rejected before executing: Stripe keeps no result, so the key stays usable.
            self.state.idempotency.release(key)
            return await self._fail(send, response)
        try:
            if rule is not None and rule.fault == "slow":
                # The key stays in flight meanwhile, so a concurrent retry gets 409.
                await asyncio.sleep(rule.seconds)
        finally:
            self.state.idempotency.complete(key, response)
        await self._deliver(scope, receive, send, rule, response, replayed=False)

    def _pick_fault(self) -> Rule | None:
        """The fault for this request; the ones that strike before execution are raised."""
        rule = self.state.faults.pick(self.operation.endpoint)
        if rule is not None:
            self.state.stats.record_fault(rule.fault)
            early = _early_error(rule)
            if early is not None:
                raise early
        return rule

    def _execute(
        self, scope: Scope, params: JSON, *, key: str | None
    ) -> StoredResponse | errors.ParamError:
        """Run the handler; a ParamError comes back unexecuted, anything else is a result."""
        store = self.state.store
        status = 200
        headers: tuple[tuple[str, str], ...] = ()
        request_id = str(scope.get(REQUEST_ID, ""))
        try:
            with store.lock:
                try:
                    body = self.operation.handler(store, scope["path_params"], Reader(params))
                finally:
                    self._publish_events(store, request_id, key)
            spec.check_response(body, total_count_requested="include" in params)
        except errors.ParamError as e:
            return e
        except errors.StripeError as e:
            status, body, headers = e.status, e.body(), tuple(e.headers.items())
        except spec.SpecError as e:
            # The mock answered something Stripe never sends: a bug of the mock, which must
            # fail loudly rather than let a test pass on it.
            logger.error("stripe_mock answer to %s breaks Stripe's spec: %s", self.operation, e)
            error = errors.api_error_500()
            status, body, headers = error.status, error.body(), ()
        except Exception:
            # A bug in the mock must not leave the key in flight forever: answer like a
            # Stripe 500, which the sync retries.
            logger.exception("stripe_mock handler failed for %s", self.operation.endpoint)
            error = errors.api_error_500()
            status, body, headers = error.status, error.body(), ()
        return StoredResponse(status, encode(body), headers, request_id)

    def _publish_events(self, store: Store, request_id: str, key: str | None) -> None:
        publish_events(self.state, store, request_id=request_id, key=key)

    async def _fail(self, send: Send, error: errors.StripeError) -> None:
        self.state.stats.record(self.operation.endpoint, error.status)
        await send_json(send, error.status, encode(error.body()), list(error.headers.items()))

    async def _deliver(
        self,
        scope: Scope,
        receive: Receive,
        send: Send,
        rule: Rule | None,
        response: StoredResponse,
        *,
        replayed: bool,
    ) -> None:
        endpoint = self.operation.endpoint
        if rule is not None and rule.fault == "lost_response":
            self.state.stats.record(endpoint, LOST, replayed=replayed)
            return await drop_connection(self.connections, scope, receive, send)
        self.state.stats.record(endpoint, response.status, replayed=replayed)
        headers = list(response.headers)
        if replayed:
            headers += [("Idempotent-Replayed", "true"), ("Original-Request", response.request_id)]
        await send_json(send, response.status, response.body, headers)


def publish_events(
    state: MockState, store: Store, *, request_id: str | None, key: str | None
) -> None:
    """Turn the changes a request made into webhook events (caller holds the store lock, so
    each event carries the object as it was right after that change)."""
    if store.events:
        drained, store.events = store.events, []
        state.webhooks.send(
            [
                webhooks.event(
                    kind,
                    shapes.credit_note(obj)
                    if isinstance(obj, CreditNote)
                    else shapes.invoice(obj, store.customers.get(obj.customer)),
                    request_id=request_id,
                    key=key,
                )
                for kind, obj in drained
            ]
        )


def _early_error(rule: Rule) -> errors.StripeError | None:
    if rule.fault == "error_500":
        return errors.api_error_500()
    if rule.fault == "rate_limit":
        return errors.rate_limited(rule.retry_after)
    if rule.fault == "auth_error":
        return errors.authentication(
            "The API key provided has expired (injected by the mock).", code="api_key_expired"
        )
    return None


async def _params(request: Request) -> JSON:
    raw = await request.body() if request.method == "POST" else request.scope["query_string"]
    try:
        return decode_form(raw)
    except FormError as e:
        raise errors.ParamError(str(e), param=e.param) from None
