"""Publishing a domain enum to GraphQL with a description on every value.

`strawberry.enum` registers the domain class in place and takes no value descriptions; the
domain's enums live in models/ and import no strawberry, so the descriptions are given here,
next to the publication, and a member without one stops the schema from building.
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import Enum
from typing import TypeVar

import strawberry

E = TypeVar("E", bound=Enum)


def publish(cls: type[E], *, name: str, description: str, values: Mapping[E, str]) -> type[E]:
    missing = [m.name for m in cls if m not in values]
    if missing:
        raise TypeError(f"{name}: no description for {', '.join(missing)}")
    strawberry.enum(cls, name=name, description=description)
    for value in cls.__strawberry_definition__.values:  # type: ignore[attr-defined]
        value.description = values[cls(value.value)]
    return cls
