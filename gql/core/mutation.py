"""`mutation`: how every mutation is declared, so that each one has the same edge.

A DomainError raised by the body becomes the payload's userErrors (gql/core/errors.py), the
field takes an optional `idempotencyKey` (gql/core/idempotency.py), and its one `input`
argument is described the same way everywhere. A test checks that every
field of Mutation has the argument, so a mutation declared another way cannot slip in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import strawberry
from strawberry.permission import BasePermission

from gql.core.errors import returns_user_errors
from gql.core.idempotency import Idempotent

INPUT_DESCRIPTION = "What to write; all of it is checked, and every problem reported, first."


def mutation(
    payload: Callable[..., Any],
    *,
    description: str,
    permission_classes: Sequence[type[BasePermission]],
) -> Callable[[Callable[..., Any]], Any]:
    def decorate(resolver: Callable[..., Any]) -> Any:
        field = strawberry.mutation(
            description=description,
            permission_classes=list(permission_classes),
            extensions=[Idempotent(payload)],
        )(returns_user_errors(payload)(resolver))
        for argument in field.arguments:
            if argument.python_name == "input" and argument.description is None:
                argument.description = INPUT_DESCRIPTION
        return field

    return decorate
