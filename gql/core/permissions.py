"""Every access decision of the API, in this one module.

1. Who is calling: `viewer_from_authorization`. `Authorization: Bearer <token>` names a live
   token (models.organizations.resolve_token), which makes a `Viewer`: a member of one
   organization, or a platform admin. No header, another scheme, an unknown or revoked token:
   no viewer. gql/app.py calls it once per request.
2. No viewer, no data: `RequireToken` (a schema extension, listed in gql/schema.py) answers one
   top-level UNAUTHENTICATED and `data: null` before any resolver runs. Introspection alone is
   allowed, so GraphiQL can load the schema before a token is set. Every root field also names
   `IsAuthenticated`, so a field is closed even if the extension were dropped.
3. Platform writes: `IsPlatformAdmin` on the admin mutations and queries. Usage in:
   `CanRecordUsage` (GraphQL `recordUsage`) and `can_record_usage` (POST /v1/usage) — admin
   and metering tokens. A metering token reads nothing: `IsAuthenticated` (every other field)
   refuses it, and the database keeps it free of any organization (CHECK
   metering_has_no_org). Refusals are a top-level FORBIDDEN before any lookup, so the caller
   learns nothing about the invoice or organization it named; the message says "this query"
   or "this mutation" as the caller sent it.
4. What a viewer may see: `visible_to`, the one scoping rule (admins: every organization;
   members: their own), used by every organization and invoice lookup and list. Children are
   read without it because they are reached only through a parent that passed it (line items,
   sync state, and `OrganizationByIdLoader` for `Invoice.organization`).
5. An organization or invoice you cannot see reads exactly like a missing one, everywhere:
   null for one object (`organization(slug:)`, `invoice(id:)`: `visible_organization`,
   `visible_invoice`), an empty list for a list (`invoices(filter: {organizationSlug})`,
   `monthlySummary(organizationSlug:)`), a NOT_FOUND userError in a mutation
   (`organization_or_not_found`, `invoice_or_not_found`).
6. What a query means when it names no organization: `default_organization`, the member's own;
   for an admin, the platform.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import sqlalchemy as sa
from graphql import ExecutionResult
from graphql.language import FieldNode, OperationDefinitionNode
from sqlmodel import Session, col, select
from strawberry.extensions import SchemaExtension
from strawberry.permission import BasePermission
from strawberry.types import Info

from gql.core.errors import UNAUTHENTICATED_MESSAGE, ClientError, unauthenticated
from gql.core.tokens import TokenCache
from models import organizations, tables, text
from models.errors import NotFound
from models.tables import TokenScope


@dataclass(frozen=True)
class Viewer:
    """Who is calling: a member of one organization, or a platform admin."""

    token_id: int
    scope: TokenScope
    organization_id: int | None

    @property
    def is_admin(self) -> bool:
        return self.scope == TokenScope.ADMIN


class Caller(Protocol):
    """What the checks read from the request context (gql/core/context.py)."""

    @property
    def session(self) -> Session: ...

    @property
    def viewer_or_none(self) -> Viewer | None: ...


# 1. Who is calling.
def viewer_from_authorization(
    session: Session, header: str, *, now: datetime, cache: TokenCache | None = None
) -> Viewer | None:
    """With `cache`, a live token is looked up at most once per TOKEN_CACHE_SECONDS (a revoked
    token stops working within that; see gql/core/tokens.py)."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    plaintext = token.strip()

    def resolve() -> tuple[Viewer, datetime | None] | None:
        row = organizations.resolve_token(session, plaintext, now=now)
        if row is None or row.id is None:
            return None
        viewer = Viewer(
            token_id=row.id, scope=TokenScope(row.scope), organization_id=row.organization_id
        )
        return viewer, row.revoked_at

    if cache is None:
        found = resolve()
        return found[0] if found is not None else None
    return cache.get_or_resolve(organizations.hash_token(plaintext), now, resolve)


# 2. No viewer, no data.
def _is_introspection_only(operation: OperationDefinitionNode | None) -> bool:
    if operation is None:
        return False
    return all(
        isinstance(sel, FieldNode) and sel.name.value.startswith("__")
        for sel in operation.selection_set.selections
    )


class RequireToken(SchemaExtension):
    """No token: one UNAUTHENTICATED error and `data: null`, before any resolver runs."""

    def on_execute(self) -> Iterator[None]:
        ec = self.execution_context
        doc = ec.graphql_document
        operation = next(
            (d for d in (doc.definitions if doc else []) if isinstance(d, OperationDefinitionNode)),
            None,
        )
        if ec.context.viewer_or_none is None and not _is_introspection_only(operation):
            ec.result = ExecutionResult(data=None, errors=[unauthenticated()])
        yield


def require_viewer(caller: Caller) -> Viewer:
    """The viewer, which RequireToken guarantees to resolvers; UNAUTHENTICATED otherwise."""
    if caller.viewer_or_none is None:
        raise unauthenticated()
    return caller.viewer_or_none


def _operation(info: Info[Caller, Any]) -> str:
    """ "query" or "mutation", as the caller wrote it, for messages that name what was refused."""
    return info.operation.operation.value


def _forbidden(info: Info[Caller, Any], needs: str) -> ClientError:
    return ClientError(f"this {_operation(info)} needs {needs}", "FORBIDDEN")


class IsAuthenticated(BasePermission):
    """A member or an admin: whoever may read. No viewer: UNAUTHENTICATED. A metering token:
    FORBIDDEN, on every field but recordUsage, so it reads nothing whatever path it takes (a
    schema walk in tests/test_token_scopes.py checks every query and mutation)."""

    message = UNAUTHENTICATED_MESSAGE
    error_extensions = {"code": "UNAUTHENTICATED"}

    def has_permission(self, source: object, info: Info[Caller, Any], **kwargs: object) -> bool:
        viewer = info.context.viewer_or_none
        if viewer is None:
            return False
        if viewer.scope == TokenScope.METERING:
            raise _forbidden(info, "a member or admin token: a metering token only records usage")
        return True


# 3. Platform writes.
class IsPlatformAdmin(BasePermission):
    """Admins only; others get FORBIDDEN naming the operation ("this query needs...")."""

    message = "this operation needs a platform admin token"
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: object, info: Info[Caller, Any], **kwargs: object) -> bool:
        viewer = info.context.viewer_or_none
        if viewer is not None and viewer.is_admin:
            return True
        raise _forbidden(info, "a platform admin token")


USAGE_WRITERS = frozenset({TokenScope.ADMIN, TokenScope.METERING})


def can_record_usage(viewer: Viewer) -> bool:
    """The metering pipeline and platform admins post usage; members never do."""
    return viewer.scope in USAGE_WRITERS


class CanRecordUsage(BasePermission):
    message = "recording usage needs an admin or a metering token"
    error_extensions = {"code": "FORBIDDEN"}

    def has_permission(self, source: object, info: Info[Caller, Any], **kwargs: object) -> bool:
        viewer = info.context.viewer_or_none
        if viewer is None:
            raise unauthenticated()
        if can_record_usage(viewer):
            return True
        raise _forbidden(info, "an admin or a metering token")


# 4. What a viewer may see.
def visible_to(viewer: Viewer, organization_id: Any) -> list[sa.ColumnElement[bool]]:
    """WHERE conditions limiting rows to what the viewer may see, given the column that holds
    the row's organization id (`tables.Invoice.organization_id`, `tables.Organization.id`).
    Admins: none. Members: their organization's rows only. A metering token belongs to no
    organization: it posts usage and reads nothing."""
    if viewer.is_admin:
        return []
    if viewer.organization_id is None:
        return [sa.false()]
    return [col(organization_id) == viewer.organization_id]


def can_see(viewer: Viewer, organization_id: int) -> bool:
    """The same rule as `visible_to`, for a row already in memory."""
    return viewer.is_admin or (
        viewer.organization_id is not None and viewer.organization_id == organization_id
    )


# 5. Lookups: what you cannot see is missing.
# A value models/text.py's rule refuses was never stored, so it names nothing (and a lone
# surrogate could not even be sent to PostgreSQL).
storable = text.storable


def visible_organization(caller: Caller, slug: str) -> tables.Organization | None:
    if not storable(slug):
        return None
    org = tables.Organization
    return caller.session.exec(
        select(org).where(org.slug == slug, *visible_to(require_viewer(caller), org.id))
    ).first()


def visible_invoice(caller: Caller, ref: str) -> tables.Invoice | None:
    """By public id (inv_...) or number (ACME-0007): public ids have an underscore, numbers not.
    Numbers are stored upper-case, so `acme-0007` is the same invoice (and the unique index on
    `number` still serves the lookup)."""
    if not storable(ref):
        return None
    inv = tables.Invoice
    match = inv.number == ref.upper() if "_" not in ref else inv.public_id == ref
    return caller.session.exec(
        select(inv).where(match, *visible_to(require_viewer(caller), inv.organization_id))
    ).first()


def organization_or_not_found(caller: Caller, slug: str) -> tables.Organization:
    org = visible_organization(caller, slug)
    if org is None:
        raise NotFound(f"no organization {slug!r}", field=("organizationSlug",))
    return org


def invoice_or_not_found(caller: Caller, ref: str) -> tables.Invoice:
    invoice = visible_invoice(caller, ref)
    if invoice is None:
        raise NotFound(f"no invoice {ref!r}", field=("invoiceId",))
    return invoice


# 6. No organization named.
def default_organization(caller: Caller) -> tables.Organization | None:
    """The member's own organization; None for an admin, whose default scope is the platform."""
    viewer = require_viewer(caller)
    if viewer.is_admin:
        return None
    assert viewer.organization_id is not None  # models.organizations.create_token ensures it
    return caller.session.get_one(tables.Organization, viewer.organization_id)
