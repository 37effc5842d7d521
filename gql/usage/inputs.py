"""recordUsage inputs: values only, every rule is in models/."""

from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from gql.core.scalars import DecimalString
from models.usage.ingest import UsageEventInput as DomainEvent


@strawberry.input(description="One usage event, as the metering pipeline measured it.")
class UsageEventInput:
    id: str = strawberry.field(
        description="The client's own id, unique per organization forever (at most 200 characters)."
    )
    organization_slug: str = strawberry.field(description="Organization that used it.")
    product: str = strawberry.field(description="Product code with a price, such as egress.")
    quantity: DecimalString = strawberry.field(
        description="Non-negative, at most 9 decimal places, in the product's unit."
    )
    occurred_at: datetime = strawberry.field(
        description="When it happened, with a time zone: at most 35 days ago, 5 minutes ahead."
    )
    app: str | None = strawberry.field(default=None, description="App the usage belongs to.")
    region: str | None = strawberry.field(default=None, description="Region code.")
    metadata: JSON | None = strawberry.field(
        default=None, description="Object, at most 50 keys; part of the payload for idempotency."
    )

    def to_domain(self) -> DomainEvent:
        return DomainEvent(
            id=self.id,
            organization_slug=self.organization_slug,
            product=self.product,
            quantity=str(self.quantity),
            occurred_at=self.occurred_at,
            app=self.app,
            region=self.region,
            metadata=self.metadata,
        )


@strawberry.input(description="Usage events; each is accepted, a duplicate, or refused alone.")
class RecordUsageInput:
    events: list[UsageEventInput] = strawberry.field(description="1 to 1,000 events.")
