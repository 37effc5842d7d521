"""`idempotencyKey` on every mutation: the argument, the write around the mutation, the replay.

With a key, the mutation runs in one transaction that begins by claiming the key and ends by
recording what the answer referred to (models/idempotency.py has the protocol and why it is
exact under concurrency). A retry with the same key and input gets the first outcome again: the
same invoice, organization, price or alert (read as it is now, so any selection set works), the
same counts and userErrors. Nothing is executed, and nothing is enqueued, for a replay.

The outcome is stored as references, not as a response body: a payload field is plain data, a
list of UserError, or an entity registered here with `register_entity` by its own package
(kind, id, how to load it), so this module knows no domain type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from datetime import date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

from sqlmodel import Session
from strawberry.annotation import StrawberryAnnotation
from strawberry.extensions import FieldExtension
from strawberry.types.arguments import StrawberryArgument
from strawberry.types.field import StrawberryField
from strawberry.types.unset import UnsetType

from gql.core.context import Info
from gql.core.errors import UserError, to_user_errors
from models import idempotency
from models.errors import DomainError, ErrorCode

T = TypeVar("T")

ARGUMENT_DESCRIPTION = (
    "Makes a retry safe: the same key from the same token with the same input answers the "
    "first outcome again without writing; with other input, IDEMPOTENCY_CONFLICT. Up to 255 "
    "printable characters (a UUID, say); kept at least 24 hours. A mutation that answered "
    "userErrors wrote nothing and keeps no key."
)


@dataclasses.dataclass(frozen=True)
class _Entity:
    kind: str
    key: Callable[[Any], int]
    load: Callable[[Session, int], Any]


_ENTITIES: dict[type[Any], _Entity] = {}
_KINDS: dict[str, _Entity] = {}


def register_entity(
    cls: type[T], kind: str, *, key: Callable[[T], int], load: Callable[[Session, int], T | None]
) -> None:
    """Let payloads refer to `cls`: stored as (kind, key(obj)), replayed as load(session, id)."""
    entity = _Entity(kind, key, load)
    _ENTITIES[cls] = entity
    _KINDS[kind] = entity


def encode(payload: object) -> dict[str, Any]:
    # Fields computed by a resolver (init=False) are not stored: the replay computes them again
    # from the stored fields (createWebhookEndpoint's secret, read from the endpoint's row).
    fields = dataclasses.fields(payload)  # type: ignore[arg-type]
    return {f.name: _encode(getattr(payload, f.name)) for f in fields if f.init}


def _encode(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, list):
        return [_encode(v) for v in value]
    if isinstance(value, UserError):
        return {"userError": [value.field, str(value.code), value.message]}
    entity = _ENTITIES.get(type(value))
    if entity is None:
        raise TypeError(f"{type(value).__name__} in a payload: register it with register_entity")
    return {"entity": [entity.kind, entity.key(value)]}


def decode(session: Session, payload: Callable[..., T], outcome: Mapping[str, Any]) -> T:
    return payload(**{name: _decode(session, v) for name, v in outcome.items()})


def _decode(session: Session, value: Any) -> Any:
    if isinstance(value, list):
        return [_decode(session, v) for v in value]
    if isinstance(value, dict):
        if "userError" in value:
            field, code, message = value["userError"]
            return UserError(field=field, code=ErrorCode(code), message=message)
        kind, id_ = value["entity"]
        return _KINDS[kind].load(session, id_)
    return value


def plain(value: Any) -> Any:
    """Input objects as JSON data for the fingerprint: unset fields left out, values exact."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {
            f.name: plain(v)
            for f in dataclasses.fields(value)
            if not isinstance(v := getattr(value, f.name), UnsetType)
        }
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, Enum):
        return plain(value.value)
    if isinstance(value, Decimal | date | datetime):
        return str(value)
    return value


class _Raced(Exception):
    """Another request committed the same key while this one waited to claim it."""


class Idempotent(FieldExtension):
    """Adds `idempotencyKey: String` to a mutation and runs the mutation under it."""

    def __init__(self, payload: Callable[..., Any]) -> None:
        self.payload = payload

    def apply(self, field: StrawberryField) -> None:
        field.arguments = [
            *field.arguments,
            StrawberryArgument(
                python_name="idempotency_key",
                graphql_name="idempotencyKey",
                type_annotation=StrawberryAnnotation(str | None),
                default=None,
                description=ARGUMENT_DESCRIPTION,
            ),
        ]

    def resolve(self, next_: Callable[..., Any], source: Any, info: Info, **kwargs: Any) -> Any:
        key: str | None = kwargs.pop("idempotency_key", None)
        if key is None:
            return next_(source, info, **kwargs)
        ctx = info.context
        try:
            idempotency.check_key(key)
            request = idempotency.Request(
                token_id=ctx.viewer.token_id,
                key=key,
                operation=info.field_name,
                fingerprint=idempotency.fingerprint(info.field_name, plain(kwargs)),
            )
            # Twice at most: a lost race for the key is followed by a replay of the winner's.
            for _ in range(2):
                stored = idempotency.find(ctx.session, request.token_id, request.key)
                if stored is not None:
                    idempotency.check_same(stored, request)
                    return decode(ctx.session, self.payload, stored.outcome)
                try:
                    return self._run(next_, source, info, request, kwargs)
                except _Raced:
                    continue
            raise AssertionError("unreachable: a raced key is committed, so found on re-read")
        except DomainError as e:
            return self.payload(user_errors=to_user_errors(e))

    def _run(
        self,
        next_: Callable[..., Any],
        source: Any,
        info: Info,
        request: idempotency.Request,
        kwargs: dict[str, Any],
    ) -> Any:
        ctx = info.context
        # One transaction for the claim, the mutation's writes and the recorded outcome. The
        # unit commits only if the mutation's own transaction block completed: a mutation that
        # answered userErrors wrote nothing and keeps no key.
        with ctx.unit.enclosing():
            if not idempotency.claim(ctx.session, request):
                raise _Raced
            result = next_(source, info, **kwargs)
            ctx.unit.before_commit(lambda: idempotency.record(ctx.session, request, encode(result)))
        return result
