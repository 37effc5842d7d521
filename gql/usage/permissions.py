"""Who may post usage: platform admins and metering tokens (the usage pipeline)."""

from __future__ import annotations

from strawberry.permission import BasePermission

from gql.core.context import Info
from models.tables import TokenScope

USAGE_WRITERS = (TokenScope.ADMIN, TokenScope.METERING)


class CanRecordUsage(BasePermission):
    message = "recording usage needs an admin or a metering token"
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: object, info: Info, **kwargs: object) -> bool:
        return info.context.viewer.scope in USAGE_WRITERS
