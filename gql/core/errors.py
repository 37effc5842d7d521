"""Errors at the API edge. The only place domain errors become `userErrors`.

- A DomainError (bad input, illegal transition, not found) becomes a UserError in the payload.
- A ClientError (unauthenticated, bad query arguments) becomes a top-level GraphQL error with
  `extensions.code`; FORBIDDEN comes from the permission classes in gql/core/permissions.py.
- Codes of userErrors are the domain's `ErrorCode`, published once as `UserErrorCode`.
- Anything else is a bug: masked as INTERNAL_ERROR with the request id, logged in full.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from functools import wraps
from typing import Any, TypeVar

import strawberry
from graphql import GraphQLError
from strawberry.extensions import MaskErrors

from models.errors import DomainError, ErrorCode

log = logging.getLogger("billing.api")
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


# The domain's own enum, published once: a new DomainError reaches clients with its code, and a
# code cannot exist here without a domain error behind it (tests/test_api_errors.py).
UserErrorCode = strawberry.enum(
    ErrorCode,
    name="UserErrorCode",
    description="Stable machine-readable codes of user errors; one meaning each.",
)


@strawberry.type(description="A problem with the input of a mutation. Nothing was written.")
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the input field at fault, such as ["items", "3", "quantity"].'
    )
    code: ErrorCode = strawberry.field(description="Stable code for programs.")
    message: str = strawberry.field(description="What went wrong, for people.")


def to_user_errors(error: DomainError) -> list[UserError]:
    return [
        UserError(
            field=list(error.field) or None,
            code=error.code,
            message=error.message,
        )
    ]


class ClientError(GraphQLError):
    """A mistake of the caller that is not a mutation's input: shown as is, never masked."""

    def __init__(self, message: str, code: str) -> None:
        super().__init__(message, extensions={"code": code})


UNAUTHENTICATED_MESSAGE = "missing or unknown API token: send Authorization: Bearer <token>"


def unauthenticated() -> ClientError:
    """Raised or answered by gql/core/permissions.py only; the decision lives there."""
    return ClientError(UNAUTHENTICATED_MESSAGE, "UNAUTHENTICATED")


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
