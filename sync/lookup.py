"""Finding what an earlier attempt may have left on Stripe, with consistent list calls.

Stripe's search (`/v1/*/search`) is eventually consistent: usually under a minute behind
writes, longer during incidents, unavailable for some accounts. Measured against the mock with
a 60 s search lag, a 1 s key lifetime and half of the create answers lost, looking up by search
before creating ended with 161 Stripe invoices for our 79. Lists are consistent, so existing
objects are found with them:

- a customer: `GET /v1/customers?email=<billing email>`, then our `metadata[org_id]`;
- an invoice: `GET /v1/invoices?customer=<id>&created[gte]=<finalized - 1 day>`, then our
  `metadata[invoice_id]` (the `created` bound keeps the listing to this invoice's days, not
  the organization's whole history; a day of slack covers clock skew).

Search is not used to decide that something does not exist.
"""

from __future__ import annotations

from datetime import timedelta

import stripe
from sqlmodel import Session

from models import tables
from sync import keys, remote_ids
from sync.errors import Mismatch
from sync.stripe_client import RemoteInvoice, StripeGateway

SLACK = timedelta(days=1)


def find_customer(
    stripe_gateway: StripeGateway, org: tables.Organization, *, exclude: str | None = None
) -> str | None:
    found = [
        cid
        for cid, meta in stripe_gateway.list_customers(org.billing_email)
        if meta.get("org_id") == org.public_id and cid != exclude
    ]
    # Oldest first: if two exist (made before this fix), keep using the first one made.
    return found[-1] if found else None


def ensure_customer(
    session: Session,
    stripe_gateway: StripeGateway,
    org: tables.Organization,
    *,
    key: str | None = None,
    replacing: str | None = None,
) -> str:
    """The organization's Stripe customer id: stored, found by a consistent list, or created
    (under the organization's key; `replacing` a customer Stripe lost, under a key naming it,
    because the organization's first key may still replay the lost customer's id)."""
    if org.stripe_customer_id and org.stripe_customer_id != replacing:
        return org.stripe_customer_id
    assert org.id is not None
    found = find_customer(stripe_gateway, org, exclude=replacing)
    if found is None:
        create_key = key or keys.customer(org.public_id)
        if replacing:
            create_key = f"{keys.customer(org.public_id)}:replacing:{replacing}"
        found = stripe_gateway.create_customer(
            org_public_id=org.public_id, name=org.name, email=org.billing_email, key=create_key
        )
    with session.begin():
        if replacing:
            remote_ids.forget_customer_id(session, org.id, replacing)
        stored = remote_ids.store_customer_id(session, org.id, found)
    org.stripe_customer_id = stored
    return stored


def is_missing_customer(e: BaseException) -> bool:
    """Stripe answered that the customer we named does not exist (deleted on Stripe, or an
    account or mock that lost it)."""
    return (
        isinstance(e, stripe.InvalidRequestError)
        and e.code == "resource_missing"
        and (e.param or "") == "customer"
    )


def find_invoice(
    stripe_gateway: StripeGateway,
    invoice: tables.Invoice,
    customer: str,
    *,
    replaced: frozenset[str],
) -> RemoteInvoice | None:
    """The Stripe invoice carrying our metadata[invoice_id], if any (never a replaced one)."""
    since = invoice.finalized_at or invoice.created_at
    created_gte = int((since - SLACK).timestamp()) if since else 0
    found = [
        r
        for r in stripe_gateway.list_invoices(customer, created_gte=created_gte)
        if r.metadata.get("invoice_id") == invoice.public_id and r.id not in replaced
    ]
    if len(found) > 1:
        ids = ", ".join(sorted(r.id for r in found))
        raise Mismatch(
            f"{len(found)} Stripe invoices carry invoice_id={invoice.public_id} ({ids}); "
            "void the extra ones on Stripe, then resync"
        )
    return found[0] if found else None
