"""Root query fields of organizations: the caller, and one organization by slug."""

from __future__ import annotations

from typing import Annotated

import strawberry
from sqlmodel import select

from gql.core import permissions
from gql.core.context import Info
from gql.core.permissions import IsAuthenticated
from gql.organizations.types import Organization, Viewer
from models import tables

VIEWER_ORGANIZATIONS_MAX = 500


@strawberry.type
class OrganizationQueries:
    @strawberry.field(
        description="The caller and the organizations it can see.",
        permission_classes=[IsAuthenticated],
    )
    def viewer(self, info: Info) -> Viewer:
        ctx = info.context
        org = tables.Organization
        rows = ctx.session.exec(
            select(org)
            .where(*permissions.visible_to(ctx.viewer, org.id))
            .order_by(org.slug)
            .limit(VIEWER_ORGANIZATIONS_MAX)
        ).all()
        return Viewer(scope=ctx.viewer.scope, organization_rows=list(rows))

    @strawberry.field(
        description="An organization by slug; null when missing or not visible.",
        graphql_type=Organization | None,
        permission_classes=[IsAuthenticated],
    )
    def organization(
        self,
        info: Info,
        slug: Annotated[
            str, strawberry.argument(description="The organization's slug, such as acme.")
        ],
    ) -> tables.Organization | None:
        return permissions.visible_organization(info.context, slug)
