"""The organization domain's enums, published to GraphQL as they are (import them from here)."""

from __future__ import annotations

from gql.core.enums import publish
from models.tables import TokenScope

publish(
    TokenScope,
    name="TokenScope",
    description="What a token may see.",
    values={
        TokenScope.MEMBER: "A member of one organization: reads its bills, sets its alerts.",
        TokenScope.ADMIN: "The platform: sees every organization and may write.",
        TokenScope.METERING: "The usage pipeline: may record usage, and read nothing.",
    },
)

__all__ = ["TokenScope"]
