"""The organization domain's enums, published to GraphQL as they are (import them from here)."""

from __future__ import annotations

import strawberry

from models.tables import TokenScope

strawberry.enum(TokenScope, name="TokenScope", description="What a token may see.")

__all__ = ["TokenScope"]
