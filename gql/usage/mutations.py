"""recordUsage (admin or metering tokens)."""

from __future__ import annotations

import strawberry

from gql.core.context import Info
from gql.core.errors import UserError, UserErrorCode
from gql.core.mutation import mutation
from gql.core.permissions import CanRecordUsage
from gql.usage.inputs import RecordUsageInput
from gql.usage.types import RecordUsagePayload
from models.errors import TooManyItems
from models.usage import ingest

MAX_EVENTS_GRAPHQL = 1_000  # bulk feeds use POST /v1/usage (10,000 a request)


@strawberry.type
class UsageMutations:
    @mutation(
        RecordUsagePayload,
        description=(
            "Record usage events (admin or metering token; at most 1,000). Each event stands "
            "alone: accepted, a duplicate (same id and payload, counted once), or refused with "
            "a userError at its path. Accepted usage is on the draft when this returns."
        ),
        permission_classes=[CanRecordUsage],
    )
    def record_usage(self, info: Info, input: RecordUsageInput) -> RecordUsagePayload:
        ctx = info.context
        if len(input.events) > MAX_EVENTS_GRAPHQL:
            raise TooManyItems(
                f"at most {MAX_EVENTS_GRAPHQL:,} events per call; use POST /v1/usage for more",
                field=("events",),
            )
        with ctx.transaction() as s:
            result = ingest.record_usage(
                s,
                [e.to_domain() for e in input.events],
                now=ctx.now(),
                request_id=ctx.request_id,
            )
        return RecordUsagePayload(
            accepted=result.accepted,
            duplicates=result.duplicates,
            user_errors=[
                UserError(
                    field=["events", str(r.index), *r.field],
                    code=UserErrorCode(r.code),
                    message=r.message,
                )
                for r in result.rejected
            ],
        )
