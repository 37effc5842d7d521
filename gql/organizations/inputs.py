"""createOrganization input: values only, every rule is in models/organizations.py."""

from __future__ import annotations

import strawberry


@strawberry.input(description="A new paying organization.")
class CreateOrganizationInput:
    slug: str = strawberry.field(description="2-63 lowercase letters, digits or dashes; unique.")
    name: str = strawberry.field(description="Display name.")
    billing_email: str = strawberry.field(description="Where invoices are e-mailed.")
    currency: str = strawberry.field(
        default="USD", description="ISO 4217 code of its invoices and prices (any case)."
    )
