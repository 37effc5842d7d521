"""The mock checked against Stripe's own definition (the SDK's generated types): requests Stripe
would refuse are refused with Stripe's error shape, and answers Stripe would never send are a
bug of the mock."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest
import stripe

from stripe_mock import create_app, running, shapes, spec
from stripe_mock.errors import ParamError
from stripe_mock.store import NewLine, Store
from tests.test_mock_stripe import KEY, lines, make_draft, sdk


def _invoice_body(n_lines: int = 1) -> dict[str, Any]:
    store = Store()
    customer = store.create_customer(
        email="a@example.com",
        name=None,
        metadata={},
    )
    inv = store.create_invoice(
        customer_id=customer.id,
        currency="usd",
        auto_advance=False,
        collection_method="send_invoice",
        due_date=int(time.time()) + 86400,
        description=None,
        metadata={},
        include_pending=False,
    )
    store.add_lines(inv.id, [NewLine(amount=5)] * n_lines, None)
    return shapes.invoice(inv, customer)


def test_every_shape_the_mock_sends_is_stripes() -> None:
    spec.check_response(_invoice_body(12))


def test_a_request_with_an_unknown_parameter_is_refused() -> None:
    with pytest.raises(ParamError) as err:
        spec.check_request("POST /v1/invoices", {"customer": "cus_1", "bogus": "1"})
    assert (err.value.code, err.value.param) == ("parameter_unknown", "bogus")
    with pytest.raises(ParamError) as nested:
        spec.check_request(
            "POST /v1/invoices/{id}/add_lines",
            {"lines": [{"amount": "5", "period": {"start": "1", "finish": "2"}}]},
        )
    assert nested.value.param == "lines[0][period][finish]"


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"customer": "c", "collection_method": "by_pigeon"}, "collection_method"),
        ({"customer": "c", "auto_advance": "maybe"}, "auto_advance"),
        ({"customer": "c", "due_date": "soon"}, "due_date"),
        ({"customer": "c", "metadata": {f"k{i}": "v" for i in range(51)}}, "metadata"),
        ({"customer": "c", "metadata": {"k" * 41: "v"}}, "metadata[" + "k" * 41 + "]"),
        ({"customer": "c", "metadata": {"k": "v" * 501}}, "metadata[k]"),
    ],
)
def test_enums_types_and_documented_limits(params: dict[str, Any], param: str) -> None:
    with pytest.raises(ParamError) as err:
        spec.check_request("POST /v1/invoices", params)
    assert err.value.param == param


def test_a_response_with_a_missing_required_field_is_refused() -> None:
    body = _invoice_body()
    del body["total"]
    with pytest.raises(spec.SpecError, match="total is required"):
        spec.check_response(body)


def test_a_response_with_an_undeclared_field_is_refused() -> None:
    body = _invoice_body()
    body["lines"]["total_count"] = 1
    with pytest.raises(spec.SpecError, match="total_count is not a field"):
        spec.check_response(body)


def test_refusals_over_http_have_stripes_error_shape() -> None:
    with running(create_app()) as url:
        client = sdk(url)
        draft = make_draft(client)
        with pytest.raises(stripe.InvalidRequestError) as err:
            client.v1.invoices.add_lines(
                draft.id,
                params={"lines": [{**lines(1)[0], "colour": "red"}]},  # type: ignore[typeddict-unknown-key]
            )
        assert err.value.http_status == 400 and err.value.code == "parameter_unknown"
        raw = httpx.post(
            f"{url}/v1/invoices/{draft.id}/add_lines",
            data={"lines[0][amount]": "1", "lines[0][colour]": "red"},
            headers={"Authorization": f"Bearer {KEY}"},
        )
        error = raw.json()["error"]
        assert raw.status_code == 400 and set(error) == {"type", "message", "code", "param"}
        assert error["type"] == "invalid_request_error"
        # 250 invoice items at most.
        with pytest.raises(stripe.InvalidRequestError):
            for start in range(0, 300, 50):
                client.v1.invoices.add_lines(draft.id, params={"lines": lines(50, start=start)})
