"""Errors at the API edge. The only place domain errors become `userErrors`.

- A DomainError (bad input, illegal transition, not found) becomes a UserError in the payload.
- A ClientError (unauthenticated, forbidden, bad query arguments) becomes a top-level GraphQL
  error with `extensions.code`.
- Anything else is a bug: masked as INTERNAL_ERROR with the request id, logged in full.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from enum import Enum
from functools import wraps
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from models.errors import DomainError

log = logging.getLogger("billing.api")
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


@strawberry.enum(description="Stable machine-readable codes of user errors; one meaning each.")
class UserErrorCode(Enum):
    NOT_FOUND = "NOT_FOUND"
    INVALID_TRANSITION = "INVALID_TRANSITION"
    INVOICE_NOT_DRAFT = "INVOICE_NOT_DRAFT"
    EMPTY_INVOICE = "EMPTY_INVOICE"
    UNKNOWN_CURRENCY = "UNKNOWN_CURRENCY"
    CURRENCY_MISMATCH = "CURRENCY_MISMATCH"
    TOO_MANY_DECIMALS = "TOO_MANY_DECIMALS"
    VALUE_OUT_OF_RANGE = "VALUE_OUT_OF_RANGE"
    NEGATIVE_QUANTITY = "NEGATIVE_QUANTITY"
    NEGATIVE_PRICE = "NEGATIVE_PRICE"
    INVALID_PERIOD = "INVALID_PERIOD"
    INVALID_VALUE = "INVALID_VALUE"
    TOO_MANY_ITEMS = "TOO_MANY_ITEMS"
    SYNC_IN_PROGRESS = "SYNC_IN_PROGRESS"
    BUSY = "BUSY"
    UNKNOWN_ORGANIZATION = "UNKNOWN_ORGANIZATION"
    UNKNOWN_PRODUCT = "UNKNOWN_PRODUCT"
    OUT_OF_WINDOW = "OUT_OF_WINDOW"
    IDEMPOTENCY_CONFLICT = "IDEMPOTENCY_CONFLICT"
    PERIOD_CLOSED = "PERIOD_CLOSED"
    USAGE_LINES_METERED = "USAGE_LINES_METERED"
    PRICE_HISTORY_FIXED = "PRICE_HISTORY_FIXED"
    ALREADY_EXISTS = "ALREADY_EXISTS"


@strawberry.type(description="A problem with the input of a mutation. Nothing was written.")
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the input field at fault, such as ["items", "3", "quantity"].'
    )
    code: UserErrorCode = strawberry.field(description="Stable code for programs.")
    message: str = strawberry.field(description="What went wrong, for people.")


def to_user_errors(error: DomainError) -> list[UserError]:
    return [
        UserError(
            field=list(error.field) or None,
            code=UserErrorCode(error.code),
            message=error.message,
        )
    ]


class ClientError(GraphQLError):
    """A mistake of the caller that is not a mutation's input: shown as is, never masked."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, extensions={"code": code})


def unauthenticated() -> ClientError:
    return ClientError(
        "missing or unknown API token: send Authorization: Bearer <token>", "UNAUTHENTICATED"
    )


def forbidden(what: str) -> ClientError:
    return ClientError(f"{what} needs a platform admin token", "FORBIDDEN")


def bad_input(message: str) -> ClientError:
    return ClientError(message, "BAD_USER_INPUT")


P = TypeVar("P")


def returns_user_errors(
    payload: Callable[..., P],
) -> Callable[[Callable[..., P]], Callable[..., P]]:
    """Turn a DomainError raised by a mutation body into `payload(user_errors=[...])`.

    The body must do its writes inside `ctx.transaction()`, so the error has already rolled
    them back when we get here: a failed mutation leaves nothing behind.
    """

    def decorate(resolver: Callable[..., P]) -> Callable[..., P]:
        @wraps(resolver)
        def wrapper(*args: Any, **kwargs: Any) -> P:
            try:
                return resolver(*args, **kwargs)
            except DomainError as e:
                return payload(user_errors=to_user_errors(e))

        return wrapper

    return decorate


def _should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False  # validation, coercion, permission and our own client errors: deliberate
    log.error(
        "internal error",
        exc_info=(type(original), original, original.__traceback__),
        extra={"request_id": request_id_var.get(), "path": error.path},
    )
    return True


class MaskInternalErrors(MaskErrors):
    """Strawberry's MaskErrors, with a code and the request id to quote to support."""

    def __init__(self) -> None:
        super().__init__(should_mask_error=_should_mask, error_message="Internal error.")

    def anonymise_error(self, error: GraphQLError) -> GraphQLError:
        return GraphQLError(
            message=f"Internal error; quote request id {request_id_var.get()} to support.",
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": "INTERNAL_ERROR", "requestId": request_id_var.get()},
        )
