"""createWebhookEndpoint and deleteWebhookEndpoint (admin)."""

from __future__ import annotations

import strawberry
from sqlmodel import Session

from gql.core.context import Info
from gql.core.idempotency import register_entity
from gql.core.mutation import mutation
from gql.core.permissions import IsPlatformAdmin
from gql.webhooks_out.types import (
    CreateWebhookEndpointInput,
    CreateWebhookEndpointPayload,
    DeleteWebhookEndpointInput,
    DeleteWebhookEndpointPayload,
    WebhookEndpoint,
)
from models import tables
from models.webhooks_out import endpoints


def _load(session: Session, endpoint_id: int) -> WebhookEndpoint | None:
    row = session.get(tables.WebhookEndpoint, endpoint_id)
    return WebhookEndpoint.from_row(row) if row else None


register_entity(WebhookEndpoint, "webhook_endpoint", key=lambda e: e.row.id or 0, load=_load)


@strawberry.type
class WebhookMutations:
    @mutation(
        CreateWebhookEndpointPayload,
        description="Register a URL for outbound webhooks (admin): answers the endpoint and its "
        "signing secret, the only time the secret is shown. At most 20 live endpoints.",
        permission_classes=[IsPlatformAdmin],
    )
    def create_webhook_endpoint(
        self, info: Info, input: CreateWebhookEndpointInput
    ) -> CreateWebhookEndpointPayload:
        ctx = info.context
        with ctx.transaction() as s:
            row = endpoints.create_endpoint(
                s, url=input.url, event_types=input.event_types, now=ctx.now()
            )
        return CreateWebhookEndpointPayload(
            webhook_endpoint=WebhookEndpoint.from_row(row), reveal_secret=True
        )

    @mutation(
        DeleteWebhookEndpointPayload,
        description="Stop sending events to an endpoint (admin); its pending deliveries are "
        "cancelled and its delivery log stays. Deleting a deleted endpoint changes nothing.",
        permission_classes=[IsPlatformAdmin],
    )
    def delete_webhook_endpoint(
        self, info: Info, input: DeleteWebhookEndpointInput
    ) -> DeleteWebhookEndpointPayload:
        ctx = info.context
        with ctx.transaction() as s:
            row = endpoints.delete_endpoint(s, str(input.id), now=ctx.now())
        return DeleteWebhookEndpointPayload(webhook_endpoint=WebhookEndpoint.from_row(row))
