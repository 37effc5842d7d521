"""Errors at the API edge. The only place domain errors become `userErrors`.

- A DomainError (bad input, illegal transition, not found) becomes a UserError in the payload.
- A ClientError (unauthenticated, bad query arguments) becomes a top-level GraphQL error with
  `extensions.code`; FORBIDDEN comes from the permission classes in gql/core/permissions.py.
- Codes of userErrors are the domain's `ErrorCode`, published once as `UserErrorCode`.
- Anything else is a bug: masked as INTERNAL_ERROR with the request id, logged in full.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from functools import wraps
from typing import Any, TypeVar

import psycopg
import sqlalchemy as sa
import strawberry
from graphql import GraphQLError, GraphQLSyntaxError
from strawberry.extensions import MaskErrors, SchemaExtension

from gql.core.enums import publish
from models.errors import DomainError, ErrorCode, meaning

log = logging.getLogger("billing.api")
request_id_var: ContextVar[str] = ContextVar("request_id", default="-")


# The domain's own enum, published once: a new DomainError reaches clients with its code, and a
# code cannot exist here without a domain error behind it (tests/test_api_errors.py).
UserErrorCode = publish(
    ErrorCode,
    name="UserErrorCode",
    description="Stable machine-readable codes of user errors; one meaning each.",
    values={code: meaning(code) for code in ErrorCode},
)


@strawberry.type(description="A problem with the input of a mutation. Nothing was written.")
class UserError:
    field: list[str] | None = strawberry.field(
        description='Path to the input field at fault, such as ["items", "3", "quantity"].'
    )
    code: ErrorCode = strawberry.field(description="Stable code for programs.")
    message: str = strawberry.field(description="What went wrong, for people.")


def to_user_errors(error: DomainError) -> list[UserError]:
    """The error and every further one it carries (a batch reports all its bad lines)."""
    return [
        UserError(field=list(e.field) or None, code=e.code, message=e.message)
        for e in (error, *error.also)
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


SERVICE_UNAVAILABLE = "SERVICE_UNAVAILABLE"
DATABASE_UNAVAILABLE = "DATABASE_UNAVAILABLE"


def database_unavailable(error: BaseException | None) -> bool:
    """The database did not answer in time or at all: the pool stayed empty past its timeout, a
    statement hit statement_timeout, a connect failed or timed out, the server went away.
    Retryable, so a 503, not a bug (`database_failure` tells the two kinds apart)."""
    return isinstance(error, sa.exc.TimeoutError | sa.exc.OperationalError | sa.exc.InterfaceError)


def database_failure(error: BaseException | None) -> tuple[str, str] | None:
    """(code, message) of a 503 for a database error, or None for any other error.

    Busy (SERVICE_UNAVAILABLE): the database answers but not in time for us, our pool stayed
    empty past its timeout or a statement hit statement_timeout; it passes with the load.
    Unavailable (DATABASE_UNAVAILABLE): it cannot be reached (connection refused or timed out,
    server gone); it passes when an operator brings it back. Both are worth a retry."""
    if not database_unavailable(error):
        return None
    request_id = request_id_var.get()
    original = getattr(error, "orig", None)
    if isinstance(error, sa.exc.TimeoutError) or isinstance(
        original, psycopg.errors.QueryCanceled | psycopg.errors.LockNotAvailable
    ):
        return (
            SERVICE_UNAVAILABLE,
            f"The database is busy; retry shortly (request id {request_id}).",
        )
    return (
        DATABASE_UNAVAILABLE,
        f"The database cannot be reached; retry later (request id {request_id}).",
    )


def _should_mask(error: GraphQLError) -> bool:
    original = error.original_error
    if original is None or isinstance(original, GraphQLError):
        return False  # validation, coercion, permission and our own client errors: deliberate
    if database_unavailable(original):
        log.warning(
            "database unavailable",
            extra={"request_id": request_id_var.get(), "error": type(original).__name__},
        )
        return True
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
        request_id = request_id_var.get()
        failure = database_failure(error.original_error)
        if failure is not None:
            code, message = failure
        else:
            message, code = (
                f"Internal error; quote request id {request_id} to support.",
                ("INTERNAL_ERROR"),
            )
        return GraphQLError(
            message=message,
            nodes=error.nodes,
            source=error.source,
            positions=error.positions,
            path=error.path,
            extensions={"code": code, "requestId": request_id},
        )


# Codes of errors about the request itself (nothing was executed): under
# application/graphql-response+json they answer 4xx without `data` (gql/core/http.py).
PARSE_FAILED = "GRAPHQL_PARSE_FAILED"
VALIDATION_FAILED = "GRAPHQL_VALIDATION_FAILED"
BAD_USER_INPUT = "BAD_USER_INPUT"


class ErrorCodes(SchemaExtension):
    """`extensions.code` on every error: graphql-core's parse, validation and variable-coercion
    errors carry none, so clients could not tell them apart without reading messages."""

    def on_validate(self) -> Iterator[None]:
        yield
        # After validation (ours or the validation cache's), these are validation errors.
        for error in self.execution_context.pre_execution_errors or []:
            _set_code(error, VALIDATION_FAILED)

    def on_operation(self) -> Iterator[None]:
        yield
        result = self.execution_context.result
        for error in (result.errors if result is not None else None) or []:
            if isinstance(error, GraphQLSyntaxError):
                _set_code(error, PARSE_FAILED)
            elif error.path is None:
                # Past validation and outside any field: graphql-core's variable coercion.
                _set_code(error, BAD_USER_INPUT)
            else:
                _set_code(error, "INTERNAL_ERROR")


def _set_code(error: GraphQLError, code: str) -> None:
    if not (error.extensions or {}).get("code"):
        error.extensions = {**(error.extensions or {}), "code": code}
