"""The mock Stripe over real HTTP, driven by the official SDK the sync uses."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import stripe
import uvicorn

from stripe_mock import LINE_LIMIT_CODE, SettingsError, create_app, running, settings_from_json
from stripe_mock.forms import FormError, decode_form

KEY = "sk_test_mock"


@pytest.fixture(scope="module")
def base_url() -> Iterator[str]:
    with running(create_app()) as url:
        yield url


@pytest.fixture
def admin(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=10) as client:
        client.post("/_mock/reset").raise_for_status()
        yield client


@pytest.fixture
def client(base_url: str, admin: httpx.Client) -> stripe.StripeClient:
    return sdk(base_url)


def sdk(base_url: str, **kwargs: Any) -> stripe.StripeClient:
    return stripe.StripeClient(
        KEY, base_addresses={"api": base_url}, max_network_retries=0, **kwargs
    )


def set_faults(admin: httpx.Client, *rules: dict[str, Any], **settings: Any) -> None:
    admin.post("/_mock/faults", json={"rules": list(rules), **settings}).raise_for_status()


def mock_invoices(admin: httpx.Client) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = admin.get("/_mock/invoices").json()["data"]
    return data


def make_draft(client: stripe.StripeClient, **params: Any) -> stripe.Invoice:
    customer = client.v1.customers.create(params={"email": "ops@example.com"})
    return client.v1.invoices.create(
        params={"customer": customer.id, "currency": "eur", "auto_advance": False, **params}
    )


def lines(n: int, start: int = 0, amount: int = 100) -> list[dict[str, Any]]:
    return [
        {
            "amount": amount,
            "description": f"Usage {i}",
            "period": {"start": 1_700_000_000, "end": 1_700_003_600},
            "metadata": {"line_item_id": f"li_{i}"},
        }
        for i in range(start, start + n)
    ]


# Form decoding


def test_decodes_sdk_bracket_encoding() -> None:
    body = (
        "lines[0][amount]=123&lines[0][period][start]=1700000000&lines[0][metadata][line_item_id]=li_1"
        "&lines[1][amount]=-5&invoice_metadata[a%5Bb]=x&expand[]=lines&expand[]=customer"
        "&metadata[7]=sparse&empty="
    )
    assert decode_form(body) == {
        "lines": [
            {
                "amount": "123",
                "period": {"start": "1700000000"},
                "metadata": {"line_item_id": "li_1"},
            },
            {"amount": "-5"},
        ],
        "invoice_metadata": {"a[b": "x"},
        "expand": ["lines", "customer"],
        "metadata": {"7": "sparse"},
        "empty": "",
    }
    with pytest.raises(FormError):
        decode_form("a=1&a[b]=2")


# Customers and invoices


def test_customer_create_retrieve_and_search(client: stripe.StripeClient) -> None:
    a = client.v1.customers.create(
        params={"email": "a@example.com", "name": "A", "metadata": {"org_id": "org_a", "tier": "x"}}
    )
    client.v1.customers.create(params={"email": "b@example.com", "metadata": {"org_id": "org_b"}})

    assert a.id.startswith("cus_") and a.object == "customer" and a.livemode is False
    assert a.last_response is not None
    assert a.last_response.headers["Request-Id"].startswith("req_")
    assert client.v1.customers.retrieve(a.id).email == "a@example.com"

    found = client.v1.customers.search(params={"query": "metadata['org_id']:'org_a'"})
    assert [c.id for c in found.data] == [a.id] and found.has_more is False
    both = client.v1.customers.search(
        params={"query": "metadata['org_id']:'org_a' AND metadata[\"tier\"]:\"x\""}
    )
    assert [c.id for c in both.data] == [a.id]
    either = client.v1.customers.search(
        params={"query": "metadata['org_id']:'org_a' OR metadata['org_id']:'org_b'"}
    )
    assert len(either.data) == 2

    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.customers.retrieve("cus_nope")
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as bad_query:
        client.v1.customers.search(params={"query": "metadata['org_id']"})
    assert bad_query.value.param == "query"


def test_invoice_lifecycle_with_lines_totals_and_pages(
    client: stripe.StripeClient, admin: httpx.Client
) -> None:
    draft = make_draft(client, metadata={"invoice_id": "inv_1"})
    assert (draft.status, draft.total, draft.currency) == ("draft", 0, "eur")
    assert draft.id.startswith("in_")

    client.v1.invoices.add_lines(draft.id, params={"lines": lines(20, amount=101)})
    updated = client.v1.invoices.add_lines(
        draft.id,
        params={"lines": lines(5, start=20, amount=7), "invoice_metadata": {"chunks": "2"}},
    )
    assert updated.total == updated.subtotal == updated.amount_due == 20 * 101 + 5 * 7
    assert updated.metadata.to_dict() == {"invoice_id": "inv_1", "chunks": "2"}
    # Stripe's lines list declares no total_count: only the first 10 and has_more.
    assert "total_count" not in updated.lines.to_dict()
    assert len(updated.lines.data) == 10 and updated.lines.has_more

    first = client.v1.invoices.line_items.list(draft.id, params={"limit": 10})
    assert len(first.data) == 10 and first.has_more
    line = first.data[0]
    assert line.id.startswith("il_") and line.amount == 101 and line.currency == "eur"
    assert line.metadata["line_item_id"] == "li_0" and line.description == "Usage 0"
    assert (line.period.start, line.period.end) == (1_700_000_000, 1_700_003_600)
    second = client.v1.invoices.line_items.list(
        draft.id, params={"limit": 10, "starting_after": first.data[-1].id}
    )
    assert second.data[0].metadata["line_item_id"] == "li_10"
    every = list(first.auto_paging_iter())
    assert [x.metadata["line_item_id"] for x in every] == [f"li_{i}" for i in range(25)]

    opened = client.v1.invoices.finalize_invoice(draft.id)
    assert opened.status == "open" and opened.number and opened.total == 2055
    voided = client.v1.invoices.void_invoice(draft.id)
    assert voided.status == "void" and voided.number == opened.number

    (stored,) = mock_invoices(admin)
    assert stored["status"] == "void" and stored["total"] == 2055
    assert stored["lines"]["total_count"] == 25 and len(stored["lines"]["data"]) == 25
    assert sum(x["amount"] for x in stored["lines"]["data"]) == stored["total"]


@pytest.mark.parametrize(
    ("action", "code"),
    [
        ("void_draft", "invoice_unexpected_state"),
        ("finalize_twice", "invoice_unexpected_state"),
        ("add_to_open", "invoice_not_editable"),
    ],
)
def test_wrong_state_is_invalid_request(
    client: stripe.StripeClient, action: str, code: str
) -> None:
    draft = make_draft(client)
    client.v1.invoices.add_lines(draft.id, params={"lines": lines(1)})
    with pytest.raises(stripe.InvalidRequestError) as err:
        if action == "void_draft":
            client.v1.invoices.void_invoice(draft.id)
        else:
            client.v1.invoices.finalize_invoice(draft.id)
            if action == "finalize_twice":
                client.v1.invoices.finalize_invoice(draft.id)
            else:
                client.v1.invoices.add_lines(draft.id, params={"lines": lines(1)})
    assert err.value.http_status == 400 and err.value.code == code


def test_zero_total_invoice_is_paid_on_finalize_like_stripe(client: stripe.StripeClient) -> None:
    assert client.v1.invoices.finalize_invoice(make_draft(client).id).status == "paid"


def test_search_and_list_invoices(client: stripe.StripeClient) -> None:
    first = make_draft(client, metadata={"invoice_id": "inv_a"})
    customer = first.customer
    assert isinstance(customer, str)
    for i in range(3):
        client.v1.invoices.create(
            params={"customer": customer, "metadata": {"invoice_id": f"inv_{i}"}}
        )
    make_draft(client, metadata={"invoice_id": "inv_other_customer"})

    found = client.v1.invoices.search(params={"query": "metadata['invoice_id']:'inv_a'"})
    assert [i.id for i in found.data] == [first.id]
    assert client.v1.invoices.search(params={"query": "metadata['invoice_id']:'x'"}).data == []

    page = client.v1.invoices.list(params={"customer": customer, "limit": 3})
    assert len(page.data) == 3 and page.has_more
    rest = client.v1.invoices.list(
        params={"customer": customer, "limit": 3, "starting_after": page.data[-1].id}
    )
    assert [i.id for i in rest.data] == [first.id] and not rest.has_more


def test_search_lags_behind_writes_when_configured(
    client: stripe.StripeClient, admin: httpx.Client
) -> None:
    set_faults(admin, search_lag_seconds=0.3)
    draft = make_draft(client, metadata={"invoice_id": "inv_new"})
    query = {"query": "metadata['invoice_id']:'inv_new'"}
    assert client.v1.invoices.search(params=query).data == []
    assert client.v1.invoices.retrieve(draft.id).id == draft.id
    time.sleep(0.35)
    assert [i.id for i in client.v1.invoices.search(params=query).data] == [draft.id]


def test_pending_items_join_an_invoice_only_when_asked(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create(params={})
    client.v1.invoice_items.create(
        params={"customer": customer.id, "amount": 40, "currency": "usd"}
    )
    excluded = client.v1.invoices.create(params={"customer": customer.id})
    included = client.v1.invoices.create(
        params={"customer": customer.id, "pending_invoice_items_behavior": "include"}
    )
    assert (excluded.total, included.total) == (0, 40)


def test_invoice_items_join_a_draft(client: stripe.StripeClient) -> None:
    draft = make_draft(client)
    item = client.v1.invoice_items.create(
        params={
            "customer": draft.customer,
            "invoice": draft.id,
            "amount": 250,
            "description": "Egress",
            "metadata": {"line_item_id": "li_x"},
        }
    )
    assert item.id.startswith("ii_") and item.invoice == draft.id and item.currency == "eur"
    assert client.v1.invoices.retrieve(draft.id).total == 250
    listed = client.v1.invoice_items.list(params={"invoice": draft.id})
    assert [i.id for i in listed.data] == [item.id]


def test_unknown_params_and_ids_are_rejected(client: stripe.StripeClient) -> None:
    draft = make_draft(client)
    with pytest.raises(stripe.InvalidRequestError) as unknown:
        client.v1.invoices.add_lines(draft.id, params={"lines": [{"amount": 1, "quantity": 2}]})
    assert unknown.value.code == "parameter_unknown" and unknown.value.param == "lines[0][quantity]"
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.invoices.add_lines("in_missing", params={"lines": lines(1)})
    assert missing.value.http_status == 404 and missing.value.code == "resource_missing"
    with pytest.raises(stripe.InvalidRequestError) as bad_customer:
        client.v1.invoices.create(params={"customer": "cus_missing"})
    assert bad_customer.value.http_status == 400 and bad_customer.value.param == "customer"
    with pytest.raises(stripe.InvalidRequestError) as no_due:
        client.v1.invoices.create(
            params={"customer": draft.customer, "collection_method": "send_invoice"}
        )
    assert no_due.value.param == "days_until_due"


def test_what_the_mock_does_not_model_is_refused(
    base_url: str, client: stripe.StripeClient
) -> None:
    """Search by anything but metadata, backward paging, Basic auth: a 4xx, never ignored."""
    with pytest.raises(stripe.InvalidRequestError) as by_field:
        client.v1.invoices.search(params={"query": "status:'open'"})
    assert by_field.value.param == "query"
    with pytest.raises(stripe.InvalidRequestError) as backward:
        client.v1.invoices.list(params={"ending_before": "in_x"})
    assert backward.value.code == "parameter_unknown"
    basic = httpx.get(f"{base_url}/v1/invoices", auth=(KEY, ""))
    assert basic.status_code == 401


def test_line_cap_is_250(client: stripe.StripeClient) -> None:
    draft = make_draft(client)
    for chunk in range(5):
        client.v1.invoices.add_lines(draft.id, params={"lines": lines(50, start=chunk * 50)})
    with pytest.raises(stripe.InvalidRequestError) as over:
        client.v1.invoices.add_lines(draft.id, params={"lines": lines(1, start=250)})
    assert over.value.code == LINE_LIMIT_CODE and "250" in str(over.value.user_message)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoice_items.create(
            params={"customer": draft.customer, "invoice": draft.id, "amount": 1}
        )

    other = make_draft(client)
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.add_lines(other.id, params={"lines": lines(251)})
    assert client.v1.invoices.retrieve(other.id).lines.data == []


# Idempotency


def test_same_key_same_params_replays(client: stripe.StripeClient, admin: httpx.Client) -> None:
    customer = client.v1.customers.create(params={"email": "x@example.com"})
    params = {"customer": customer.id, "metadata": {"invoice_id": "inv_1"}}
    first = client.v1.invoices.create(
        params=params, options={"idempotency_key": "invoice:1:create"}
    )
    again = client.v1.invoices.create(
        params=params, options={"idempotency_key": "invoice:1:create"}
    )
    assert again.id == first.id
    assert again.last_response is not None and first.last_response is not None
    assert again.last_response.headers["Idempotent-Replayed"] == "true"
    assert again.last_response.headers["Original-Request"] == first.last_response.request_id
    assert len(mock_invoices(admin)) == 1

    with pytest.raises(stripe.IdempotencyError) as other:
        client.v1.invoices.create(
            params={**params, "description": "changed"},
            options={"idempotency_key": "invoice:1:create"},
        )
    assert other.value.http_status == 400
    assert len(mock_invoices(admin)) == 1


def test_key_in_flight_gets_409(client: stripe.StripeClient, admin: httpx.Client) -> None:
    customer = client.v1.customers.create(params={})
    set_faults(
        admin, {"endpoint": "POST /v1/invoices", "fault": "slow", "seconds": 0.6, "count": 1}
    )
    params = {"customer": customer.id}
    results: list[str] = []
    slow = threading.Thread(
        target=lambda: results.append(
            client.v1.invoices.create(params=params, options={"idempotency_key": "k"}).id
        )
    )
    slow.start()
    time.sleep(0.2)
    with pytest.raises(stripe.APIError) as busy:
        client.v1.invoices.create(params=params, options={"idempotency_key": "k"})
    slow.join()
    assert busy.value.http_status == 409
    assert busy.value.json_body is not None
    assert busy.value.json_body["error"]["code"] == "idempotency_key_in_use"
    assert (
        client.v1.invoices.create(params=params, options={"idempotency_key": "k"}).id == results[0]
    )
    assert len(mock_invoices(admin)) == 1


def test_expired_key_creates_a_second_object(
    client: stripe.StripeClient, admin: httpx.Client
) -> None:
    customer = client.v1.customers.create(params={})
    set_faults(admin, idempotency_ttl_seconds=0.2)
    first = client.v1.invoices.create(
        params={"customer": customer.id}, options={"idempotency_key": "k"}
    )
    time.sleep(0.3)
    second = client.v1.invoices.create(
        params={"customer": customer.id}, options={"idempotency_key": "k"}
    )
    assert second.id != first.id
    assert len(mock_invoices(admin)) == 2


# Faults


def test_error_500_is_not_executed_nor_kept(
    client: stripe.StripeClient, admin: httpx.Client
) -> None:
    set_faults(admin, {"endpoint": "POST /v1/customers", "fault": "error_500", "count": 1})
    with pytest.raises(stripe.APIError) as err:
        client.v1.customers.create(
            params={"email": "a@example.com"}, options={"idempotency_key": "c"}
        )
    assert err.value.http_status == 500
    assert admin.get("/_mock/customers").json()["data"] == []
    created = client.v1.customers.create(
        params={"email": "a@example.com"}, options={"idempotency_key": "c"}
    )
    assert created.last_response is not None
    assert "Idempotent-Replayed" not in created.last_response.headers
    assert len(admin.get("/_mock/customers").json()["data"]) == 1


def test_rate_limit_exposes_retry_after(client: stripe.StripeClient, admin: httpx.Client) -> None:
    set_faults(admin, {"endpoint": "*", "fault": "rate_limit", "retry_after": 2, "count": 1})
    with pytest.raises(stripe.RateLimitError) as err:
        client.v1.customers.create(params={})
    assert err.value.http_status == 429 and err.value.headers is not None
    assert err.value.headers["Retry-After"] == "2"


def test_auth_errors(client: stripe.StripeClient, admin: httpx.Client) -> None:
    set_faults(admin, {"endpoint": "GET /v1/invoices", "fault": "auth_error", "count": 1})
    with pytest.raises(stripe.AuthenticationError):
        client.v1.invoices.list()
    client.v1.invoices.list()

    anonymous = admin.get("/v1/invoices")
    assert anonymous.status_code == 401 and anonymous.headers["Request-Id"].startswith("req_")
    assert anonymous.json()["error"]["type"] == "invalid_request_error"
    with pytest.raises(stripe.AuthenticationError):
        stripe.StripeClient(
            "sk_live_nope", base_addresses={"api": str(admin.base_url)}
        ).v1.invoices.list()


# The SDK's HTTPXClient posts raw bytes through `data=`, which httpx deprecates.
@pytest.mark.filterwarnings("ignore:Use 'content=<...>':DeprecationWarning")
@pytest.mark.parametrize("http_client", ["requests", "httpx"])
def test_lost_response_executes_then_drops(
    base_url: str, admin: httpx.Client, http_client: str
) -> None:
    client = sdk(
        base_url,
        http_client=stripe.HTTPXClient(allow_sync_methods=True) if http_client == "httpx" else None,
    )
    customer = client.v1.customers.create(params={})
    set_faults(admin, {"endpoint": "POST /v1/invoices", "fault": "lost_response", "count": 1})
    params = {"customer": customer.id, "metadata": {"invoice_id": "inv_lost"}}
    with pytest.raises(stripe.APIConnectionError) as err:
        client.v1.invoices.create(params=params, options={"idempotency_key": "lost"})
    assert err.value.should_retry
    (stored,) = mock_invoices(admin)
    assert stored["metadata"] == {"invoice_id": "inv_lost"}

    retried = client.v1.invoices.create(params=params, options={"idempotency_key": "lost"})
    assert retried.id == stored["id"]
    assert retried.last_response is not None
    assert retried.last_response.headers["Idempotent-Replayed"] == "true"
    stats = admin.get("/_mock/stats").json()["requests"]["POST /v1/invoices"]
    assert stats == {"lost": 1, "200": 1}


def _raw_request(method: str, path: str, body: bytes = b"") -> bytes:
    return (
        f"{method} {path} HTTP/1.1\r\nHost: mock\r\nAuthorization: Bearer {KEY}\r\n"
        f"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


def _read_until_closed(sock: socket.socket) -> bytes:
    received = b""
    try:
        while chunk := sock.recv(65536):
            received += chunk
    except ConnectionResetError:
        pass
    return received


def test_lost_response_sends_not_one_byte(
    base_url: str, admin: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    """The socket closes with nothing written: no status line, and no 500 from uvicorn."""
    set_faults(admin, {"endpoint": "POST /v1/customers", "fault": "lost_response", "count": 1})
    host, port = base_url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        # A keep-alive request first: the drop must not eat an answer already given.
        sock.sendall(_raw_request("GET", "/v1/invoices"))
        first = sock.recv(65536)
        assert first.startswith(b"HTTP/1.1 200 ") and first.endswith(b"}")
        sock.sendall(_raw_request("POST", "/v1/customers", b"email=a%40example.com"))
        assert _read_until_closed(sock) == b""
    assert len(admin.get("/_mock/customers").json()["data"]) == 1
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []


def test_lost_response_without_the_front_is_still_a_connection_error() -> None:
    """`create_app()` under a bare uvicorn: a started, broken response, never a 500."""
    app = create_app(
        rules=[{"endpoint": "POST /v1/customers", "fault": "lost_response", "count": 1}]
    )
    sock = socket.create_server(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="critical"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        while not server.started:
            assert thread.is_alive()
            time.sleep(0.01)
        client = sdk(f"http://127.0.0.1:{sock.getsockname()[1]}")
        with pytest.raises(stripe.APIConnectionError):
            client.v1.customers.create(params={})
        assert app.mock.stats.snapshot()["requests"]["POST /v1/customers"] == {"lost": 1}
    finally:
        server.should_exit = True
        thread.join(5)


def test_timeout_holds_then_drops_without_executing(base_url: str, admin: httpx.Client) -> None:
    customer = sdk(base_url).v1.customers.create(params={})
    set_faults(
        admin, {"endpoint": "POST /v1/invoices", "fault": "timeout", "seconds": 1.0, "count": 1}
    )
    impatient = sdk(base_url, http_client=stripe.RequestsClient(timeout=0.3))
    started = time.monotonic()
    with pytest.raises(stripe.APIConnectionError):
        impatient.v1.invoices.create(params={"customer": customer.id})
    assert time.monotonic() - started < 0.9

    set_faults(
        admin, {"endpoint": "POST /v1/invoices", "fault": "timeout", "seconds": 0.1, "count": 1}
    )
    with pytest.raises(stripe.APIConnectionError):
        sdk(base_url).v1.invoices.create(params={"customer": customer.id})
    assert mock_invoices(admin) == []
    # The first request is still held on the server after the impatient client left; wait until
    # the mock has counted both, so the count cannot land in the next test's statistics.
    deadline = time.monotonic() + 10
    while _timeouts_counted(admin) < 2:
        assert time.monotonic() < deadline, "the held request never finished"
        time.sleep(0.05)


def _timeouts_counted(admin: httpx.Client) -> int:
    counts = admin.get("/_mock/stats").json()["requests"].get("POST /v1/invoices", {})
    return int(counts.get("timeout", 0))


def test_count_rules_are_spent(client: stripe.StripeClient, admin: httpx.Client) -> None:
    set_faults(admin, {"endpoint": "*", "fault": "error_500", "count": 3})
    for _ in range(3):
        with pytest.raises(stripe.APIError):
            client.v1.invoices.list()
    client.v1.invoices.list()
    (rule,) = admin.get("/_mock/faults").json()["rules"]
    assert rule["count"] == 0 and rule["fired"] == 3


def test_probability_rules_follow_the_seed(
    client: stripe.StripeClient, admin: httpx.Client
) -> None:
    def pattern() -> list[bool]:
        set_faults(
            admin,
            {"endpoint": "GET /v1/invoices", "fault": "error_500", "probability": 0.5},
            seed=42,
        )
        outcome = []
        for _ in range(30):
            try:
                client.v1.invoices.list()
                outcome.append(True)
            except stripe.APIError:
                outcome.append(False)
        return outcome

    first = pattern()
    assert 0 < first.count(False) < 30
    assert pattern() == first


def test_stats_count_by_endpoint_and_status(
    client: stripe.StripeClient, admin: httpx.Client
) -> None:
    draft = make_draft(client)
    client.v1.invoices.add_lines(draft.id, params={"lines": lines(2)})
    set_faults(
        admin, {"endpoint": "POST /v1/invoices/{id}/add_lines", "fault": "error_500", "count": 1}
    )
    with pytest.raises(stripe.APIError):
        client.v1.invoices.add_lines(draft.id, params={"lines": lines(2)})
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.invoices.retrieve("in_missing")
    admin.get("/v1/nothing-here", headers={"Authorization": f"Bearer {KEY}"})

    stats = admin.get("/_mock/stats").json()
    assert stats["requests"] == {
        "POST /v1/customers": {"200": 1},
        "POST /v1/invoices": {"200": 1},
        "POST /v1/invoices/{id}/add_lines": {"200": 1, "500": 1},
        "GET /v1/invoices/{id}": {"404": 1},
        "unmatched": {"404": 1},
    }
    assert stats["total"] == 6


def test_reset_forgets_everything(client: stripe.StripeClient, admin: httpx.Client) -> None:
    make_draft(client)
    set_faults(admin, {"endpoint": "*", "fault": "error_500", "probability": 0.0})
    admin.post("/_mock/reset").raise_for_status()
    assert mock_invoices(admin) == []
    assert admin.get("/_mock/customers").json()["data"] == []
    assert admin.get("/_mock/stats").json()["total"] == 0
    assert admin.get("/_mock/faults").json()["rules"] == []
    admin.delete("/_mock/faults").raise_for_status()


def test_fault_rules_are_validated(admin: httpx.Client) -> None:
    typo = admin.post(
        "/_mock/faults",
        json={"rules": [{"endpoint": "POST /v1/invoice", "fault": "slow", "count": 1}]},
    )
    assert typo.status_code == 400 and "unknown endpoint" in typo.json()["error"]["message"]
    with pytest.raises(ValueError):
        create_app(rules=[{"endpoint": "*", "fault": "explode", "count": 1}])
    with pytest.raises(SettingsError):
        settings_from_json('{"rules": [{"endpoint": "*", "fault": "slow"}]}')
    assert settings_from_json('{"seed": 1, "rules": []}') == {"seed": 1, "rules": []}


def test_start_up_rules_apply() -> None:
    app = create_app(rules=[{"endpoint": "GET /v1/invoices", "fault": "error_500", "count": 1}])
    with running(app) as url:
        client = sdk(url)
        with pytest.raises(stripe.APIError):
            client.v1.invoices.list()
        assert client.v1.invoices.list().data == []
