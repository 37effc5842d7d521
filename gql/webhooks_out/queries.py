"""webhookEndpoints (admin)."""

from __future__ import annotations

import strawberry

from gql.core.context import Info
from gql.core.permissions import IsPlatformAdmin
from gql.webhooks_out.types import WebhookEndpoint
from models.webhooks_out import endpoints


@strawberry.type
class WebhookQueries:
    @strawberry.field(
        description="Live outbound webhook endpoints, oldest first (admin; at most 20). "
        "Secrets are never shown here.",
        permission_classes=[IsPlatformAdmin],
    )
    def webhook_endpoints(self, info: Info) -> list[WebhookEndpoint]:
        return [WebhookEndpoint.from_row(r) for r in endpoints.live_endpoints(info.context.session)]
