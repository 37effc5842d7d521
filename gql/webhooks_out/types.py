"""GraphQL types of outbound webhook endpoints."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gql.core.errors import UserError
from models import tables
from models.webhooks_out.events import EVENT_TYPES

EVENT_TYPES_DOC = "; ".join(f"{name}: {what}" for name, what in EVENT_TYPES.items())


@strawberry.type(
    description="A URL that receives signed JSON events (outbound webhooks). Each delivery "
    'carries `Billing-Signature: t=<unix>,v1=<hex HMAC-SHA256 of "<t>.<body>">` made with '
    "the endpoint's secret, and the event id receivers deduplicate on; failed deliveries are "
    "retried with backoff for a day."
)
class WebhookEndpoint:
    row: strawberry.Private[tables.WebhookEndpoint]
    id: strawberry.ID = strawberry.field(description="Endpoint id (we_...).")
    url: str = strawberry.field(description="Where events are POSTed (http or https).")
    event_types: list[str] = strawberry.field(
        description=f"The event types it receives. Known types: {EVENT_TYPES_DOC}"
    )
    created_at: datetime = strawberry.field(description="When it was registered.")
    deleted_at: datetime | None = strawberry.field(
        description="When it was deleted; null while it receives events."
    )

    @classmethod
    def from_row(cls, r: tables.WebhookEndpoint) -> WebhookEndpoint:
        assert r.created_at is not None
        return cls(
            row=r,
            id=strawberry.ID(r.public_id),
            url=r.url,
            event_types=list(r.event_types),
            created_at=r.created_at,
            deleted_at=r.deleted_at,
        )


@strawberry.input(description="A new webhook endpoint.")
class CreateWebhookEndpointInput:
    url: str = strawberry.field(
        description="http:// or https:// URL, with a host, no user:password@, no #fragment, "
        "at most 2,048 characters."
    )
    event_types: list[str] = strawberry.field(
        description=f"At least one of the known event types: {', '.join(EVENT_TYPES)}."
    )


@strawberry.input(description="The webhook endpoint to delete.")
class DeleteWebhookEndpointInput:
    id: strawberry.ID = strawberry.field(description="Endpoint id (we_...).")


@strawberry.type(description="Result of createWebhookEndpoint.")
class CreateWebhookEndpointPayload:
    webhook_endpoint: WebhookEndpoint | None = strawberry.field(
        default=None, description="The endpoint registered."
    )
    # The secret is read from the endpoint's row when this payload is answered, so the
    # idempotency record (which replays this answer to a retry) never holds a copy of it.
    reveal_secret: strawberry.Private[bool] = False
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Empty on success; otherwise nothing was written."
    )

    @strawberry.field(
        description="The signing secret (whsec_...): answered here only, never by a query. "
        "Keep it to verify Billing-Signature."
    )
    def secret(self) -> str | None:
        if not self.reveal_secret or self.webhook_endpoint is None:
            return None
        return self.webhook_endpoint.row.secret


@strawberry.type(description="Result of deleteWebhookEndpoint.")
class DeleteWebhookEndpointPayload:
    webhook_endpoint: WebhookEndpoint | None = strawberry.field(
        default=None, description="The endpoint, now with deletedAt set."
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Empty on success; otherwise nothing was written."
    )
