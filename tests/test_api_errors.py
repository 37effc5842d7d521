"""Error codes: every domain error reaches a client as its own `UserErrorCode`, never as
INTERNAL_ERROR. Runs each DomainError subclass through the API's one mapper (the
`returns_user_errors` decorator and Strawberry's enum serialisation) on a one-field schema."""

from __future__ import annotations

from typing import Any

import pytest
import strawberry

from gql.core.errors import MaskInternalErrors, UserError, UserErrorCode, returns_user_errors
from models import errors


def _domain_errors() -> list[type[errors.DomainError]]:
    found: list[type[errors.DomainError]] = [errors.DomainError]
    for cls in found:
        found.extend(c for c in cls.__subclasses__() if c not in found)
    return found


DOMAIN_ERRORS = {cls.__name__: cls for cls in _domain_errors()}


@strawberry.type
class _Payload:
    user_errors: list[UserError] = strawberry.field(default_factory=list)


@strawberry.type
class _Query:
    @strawberry.field
    def ok(self) -> bool:
        return True


@strawberry.type
class _Mutation:
    @strawberry.mutation
    @returns_user_errors(_Payload)
    def fail(self, error: str) -> _Payload:
        raise DOMAIN_ERRORS[error]("it went wrong", field=("x",))


_SCHEMA = strawberry.Schema(query=_Query, mutation=_Mutation, extensions=[MaskInternalErrors])


def test_every_domain_error_names_a_member_of_the_one_code_enum() -> None:
    assert len(DOMAIN_ERRORS) > 10  # the walk found the subclasses, not just the base
    for cls in DOMAIN_ERRORS.values():
        assert isinstance(cls.code, errors.ErrorCode), cls
        assert UserErrorCode(cls.code) is cls.code, cls
    # No code is left without an error that raises it, and no two errors share one.
    assert sorted(c.code for c in DOMAIN_ERRORS.values()) == sorted(errors.ErrorCode)


@pytest.mark.parametrize("name", sorted(DOMAIN_ERRORS))
def test_raising_each_domain_error_answers_its_code(name: str) -> None:
    result = _SCHEMA.execute_sync(
        "mutation($e: String!) { fail(error: $e) { userErrors { field code message } } }",
        variable_values={"e": name},
    )
    assert result.errors is None, result.errors
    data: dict[str, Any] = result.data or {}
    assert data["fail"]["userErrors"] == [
        {"field": ["x"], "code": str(DOMAIN_ERRORS[name].code), "message": "it went wrong"}
    ]
