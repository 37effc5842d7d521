"""Stripe-shaped API errors.

The SDK picks its exception class from the HTTP status first and `error.type` second
(stripe/_api_requestor.py `specific_v1_api_error`), so each helper fixes both.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]

# Stripe has no public code for the 250-item cap; this one is ours and stable.
LINE_LIMIT_CODE = "invoice_line_items_limit_exceeded"
MAX_INVOICE_LINES = 250


class StripeError(Exception):
    """An error raised while executing a request; its result is kept for its idempotency key."""

    def __init__(
        self,
        status: int,
        type_: str,
        message: str,
        *,
        code: str | None = None,
        param: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.type = type_
        self.message = message
        self.code = code
        self.param = param
        self.headers = headers or {}

    def body(self) -> JSON:
        error: JSON = {"type": self.type, "message": self.message}
        if self.code is not None:
            error["code"] = self.code
        if self.param is not None:
            error["param"] = self.param
        return {"error": error}


class ParamError(StripeError):
    """Invalid parameters: Stripe rejects these before executing, so no result is kept."""

    def __init__(self, message: str, *, param: str, code: str = "parameter_invalid") -> None:
        super().__init__(400, "invalid_request_error", message, code=code, param=param)


def missing(kind: str, object_id: str, *, param: str | None = None) -> StripeError:
    # A missing object named in the URL is a 404; one named by a body param is a 400.
    status = 400 if param else 404
    return StripeError(
        status,
        "invalid_request_error",
        f"No such {kind}: '{object_id}'",
        code="resource_missing",
        param=param or "id",
    )


def unexpected_state(message: str) -> StripeError:
    return StripeError(400, "invalid_request_error", message, code="invoice_unexpected_state")


def not_editable(invoice_id: str, status: str) -> StripeError:
    return StripeError(
        400,
        "invalid_request_error",
        f"Invoice {invoice_id} is {status}; lines can only be added to a draft invoice.",
        code="invoice_not_editable",
    )


def line_limit(invoice_id: str, current: int, adding: int) -> StripeError:
    return StripeError(
        400,
        "invalid_request_error",
        f"Invoice {invoice_id} has {current} line items; adding {adding} would exceed the "
        f"limit of {MAX_INVOICE_LINES} invoice items per invoice.",
        code=LINE_LIMIT_CODE,
    )


def api_error_500() -> StripeError:
    return StripeError(500, "api_error", "An unknown error occurred on the mock Stripe server.")


def rate_limited(retry_after: float) -> StripeError:
    # Stripe reports rate limiting as an invalid_request_error with code rate_limit.
    return StripeError(
        429,
        "invalid_request_error",
        "Too many requests hit the API too quickly (injected by the mock).",
        code="rate_limit",
        headers={"Retry-After": _seconds_header(retry_after)},
    )


def rate_limit_exceeded() -> StripeError:
    # Stripe's answer past its request rate: same type and code as above, its own message.
    return StripeError(
        429,
        "invalid_request_error",
        "Too many requests hit the API too quickly. We recommend an exponential backoff of "
        "your requests.",
        code="rate_limit",
    )


def authentication(message: str, *, code: str | None = None) -> StripeError:
    # Stripe answers bad keys with 401 and type invalid_request_error; the status alone
    # makes the SDK raise AuthenticationError.
    return StripeError(401, "invalid_request_error", message, code=code)


def idempotency_mismatch(key: str) -> StripeError:
    return StripeError(
        400,
        "idempotency_error",
        f"Keys for idempotent requests can only be used with the same parameters and the same "
        f"endpoint they were first used with. Key {key!r} was first used differently.",
    )


def idempotency_in_use(key: str) -> StripeError:
    return StripeError(
        409,
        "api_error",
        f"Another request with idempotency key {key!r} is still being processed; retry later.",
        code="idempotency_key_in_use",
        headers={"Stripe-Should-Retry": "true"},
    )


def unrecognized_url(method: str, path: str) -> StripeError:
    return StripeError(
        404,
        "invalid_request_error",
        f"Unrecognized request URL ({method}: {path}). The mock supports only the endpoints "
        "the billing sync uses.",
    )


def _seconds_header(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def card_declined() -> StripeError:
    # What Stripe answers `pay` with when the charge fails (stripe-python: CardError).
    return StripeError(
        402,
        "card_error",
        "Your card was declined (the mock's declined card).",
        code="card_declined",
    )
