"""createOrganization (admin): a new customer to bill, without the demo seed."""

from __future__ import annotations

import strawberry
from sqlmodel import Session

from gql.core.context import Info
from gql.core.errors import UserError
from gql.core.idempotency import register_entity
from gql.core.mutation import mutation
from gql.core.permissions import IsPlatformAdmin
from gql.organizations.inputs import CreateOrganizationInput
from gql.organizations.types import Organization
from models import organizations, tables


def _load_organization(session: Session, organization_id: int) -> tables.Organization | None:
    return session.get(tables.Organization, organization_id)


register_entity(
    tables.Organization, "organization", key=lambda o: o.id or 0, load=_load_organization
)


@strawberry.type(description="Result of createOrganization.")
class OrganizationPayload:
    organization: tables.Organization | None = strawberry.field(
        graphql_type=Organization | None, default=None, description="The new organization."
    )
    user_errors: list[UserError] = strawberry.field(
        default_factory=list, description="Empty on success; otherwise nothing was written."
    )


@strawberry.type
class OrganizationMutations:
    @mutation(
        OrganizationPayload,
        description="Create an organization to bill (admin).",
        permission_classes=[IsPlatformAdmin],
    )
    def create_organization(
        self, info: Info, input: CreateOrganizationInput
    ) -> OrganizationPayload:
        ctx = info.context
        with ctx.transaction() as s:
            org = organizations.create(
                s,
                slug=input.slug,
                name=input.name,
                billing_email=input.billing_email,
                default_currency=input.currency,
            )
        return OrganizationPayload(organization=org)
