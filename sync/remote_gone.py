"""A Stripe invoice that was voided or deleted on Stripe while ours still needs it.

That is an operator's matter (someone acted on Stripe by hand), surfaced as FAILED with a
code of its own and the action to take, never silently recreated: a second remote invoice
could bill the customer twice. `resyncInvoice(input: {invoiceId, recreate: true})` makes a new
Stripe invoice on purpose (new key generation) and leaves the voided one alone.
"""

from __future__ import annotations

import stripe

from sync.errors import Mismatch
from sync.stripe_client import RemoteInvoice, StripeGateway

ACTION = (
    "if the invoice should still be billed, run resyncInvoice(input: {invoiceId, recreate: "
    "true}) to create a new Stripe invoice for it; otherwise void it here"
)


class RemoteGone(Mismatch):
    code = "REMOTE_GONE"


class RemoteVoided(RemoteGone):
    code = "REMOTE_VOIDED"


class RemoteDeleted(RemoteGone):
    code = "REMOTE_DELETED"


def retrieve(stripe_gateway: StripeGateway, remote_id: str) -> RemoteInvoice:
    """The stored remote invoice, or RemoteDeleted when Stripe no longer has it."""
    try:
        return stripe_gateway.retrieve_invoice(remote_id)
    except stripe.InvalidRequestError as e:
        if e.http_status == 404 and e.code == "resource_missing":
            raise RemoteDeleted(
                f"Stripe invoice {remote_id} no longer exists on Stripe (deleted there); " + ACTION
            ) from e
        raise


def check_not_voided(remote: RemoteInvoice, *, voided_here: bool) -> None:
    if remote.status == "void" and not voided_here:
        raise RemoteVoided(f"Stripe invoice {remote.id} was voided on Stripe; " + ACTION)
