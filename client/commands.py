"""What each command asks the API and the plain data it answers (printed by `render`, or as
JSON with --json). docs/client.md lists what each command asks."""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal, InvalidOperation
from typing import Any

from client.api import EXIT_REFUSED, EXIT_USAGE, Api, ClientError

MONEY = "cents currency formatted"

VIEWER = "{ viewer { isAdmin organizations { slug name } } }"


def organization(api: Api, slug: str | None) -> str:
    """The organization a command is about: --org, else the token's own."""
    if slug:
        return slug
    viewer = api.query(VIEWER)["viewer"]
    orgs = viewer["organizations"]
    if viewer["isAdmin"] or len(orgs) != 1:
        raise ClientError("this token sees several organizations: name one with --org", EXIT_USAGE)
    return str(orgs[0]["slug"])


NOW = f"""query($org: String!) {{ organization(slug: $org) {{ slug name upcomingInvoice {{
  asOf total {{ {MONEY} }} projectedTotal {{ {MONEY} }}
  projection {{ total {{ {MONEY} }} low {{ {MONEY} }} high {{ {MONEY} }} method }}
  invoice {{ id periodStart periodEnd lineItemCount }}
  byApp {{ name total {{ {MONEY} }} }} }} }} }}"""


def now(api: Api, org: str | None, *, top: int = 5) -> dict[str, Any]:
    slug = organization(api, org)
    found = api.query(NOW, org=slug)["organization"]
    if found is None:
        raise ClientError(f"no organization {slug!r} for this token", EXIT_REFUSED)
    up = found["upcomingInvoice"]
    if up is None:
        return {"organization": slug, "name": found["name"], "period": None, "total": None,
                "projected": None, "projection": None, "as_of": None, "top_apps": []}  # fmt: skip
    return {
        "organization": slug,
        "name": found["name"],
        "period": up["invoice"]["periodStart"][:7],
        "period_end": up["invoice"]["periodEnd"],
        "as_of": up["asOf"],
        "lines": up["invoice"]["lineItemCount"],
        "total": up["total"],
        "projected": up["projectedTotal"],
        "projection": up["projection"],
        "top_apps": [{"app": g["name"], "total": g["total"]} for g in up["byApp"][:top]],
        "more_apps": max(0, len(up["byApp"]) - top),
    }


INVOICES = f"""query($first: Int!, $org: String) {{
  invoices(first: $first, filter: {{ organizationSlug: $org }}) {{ totalCount nodes {{
    id number status periodStart dueDate total {{ {MONEY} }} payment {{ status }}
    hostedInvoiceUrl }} }} }}"""


def invoices(api: Api, org: str | None, *, limit: int) -> dict[str, Any]:
    found = api.query(INVOICES, first=limit, org=org)["invoices"]
    return {
        "total_count": found["totalCount"],
        "invoices": [
            {
                "number": n["number"],
                "id": n["id"],
                "status": n["status"],
                "period": n["periodStart"][:7],
                "due_date": n["dueDate"],
                "total": n["total"],
                "payment": (n["payment"] or {}).get("status"),
                "pay_url": n["hostedInvoiceUrl"],
            }
            for n in found["nodes"]
        ],
    }


INVOICE = f"""query($id: ID!, $after: String) {{ invoice(id: $id) {{
  id number status currency periodStart periodEnd dueDate finalizedAt paidAt
  subtotal {{ {MONEY} }} total {{ {MONEY} }} organization {{ slug name }}
  payment {{ status attemptCount lastFailureMessage nextAttemptAt }}
  hostedInvoiceUrl pdfUrl creditedTotal {{ {MONEY} }} amountDue {{ {MONEY} }}
  creditNotes {{ number status reason total {{ {MONEY} }} }}
  lineItems(first: 100, after: $after) {{ pageInfo {{ hasNextPage endCursor }} nodes {{
    description kind product app region displayQuantity displayUnit displayUnitPrice
    quantity unit unitPrice amount {{ {MONEY} }} }} }} }} }}"""


def invoice(api: Api, number: str) -> dict[str, Any]:
    found = api.query(INVOICE, id=number, after=None)["invoice"]
    if found is None:
        raise ClientError(f"no invoice {number!r} for this token", EXIT_REFUSED)
    lines = list(found["lineItems"]["nodes"])
    page = found["lineItems"]["pageInfo"]
    while page["hasNextPage"]:
        more = api.query(INVOICE, id=number, after=page["endCursor"])["invoice"]["lineItems"]
        lines += more["nodes"]
        page = more["pageInfo"]
    return {
        "number": found["number"],
        "id": found["id"],
        "organization": found["organization"]["slug"],
        "status": found["status"],
        "currency": found["currency"],
        "period": found["periodStart"][:7],
        "period_start": found["periodStart"],
        "period_end": found["periodEnd"],
        "due_date": found["dueDate"],
        "finalized_at": found["finalizedAt"],
        "paid_at": found["paidAt"],
        "subtotal": found["subtotal"],
        "total": found["total"],
        "credited_total": found["creditedTotal"],
        "amount_due": found["amountDue"],
        "credit_notes": found["creditNotes"],
        "payment": found["payment"],
        "pay_url": found["hostedInvoiceUrl"],
        "pdf_url": found["pdfUrl"],
        "lines": [
            {
                "description": line["description"],
                "kind": line["kind"],
                "quantity": line["displayQuantity"],
                "unit": line["displayUnit"],
                "unit_price_cents": line["displayUnitPrice"],
                "exact": {
                    "quantity": line["quantity"],
                    "unit": line["unit"],
                    "unit_price_cents": line["unitPrice"],
                },
                "amount": line["amount"],
            }
            for line in lines
        ],
    }


USAGE = f"""query($org: String!) {{ organization(slug: $org) {{ upcomingInvoice {{
  total {{ {MONEY} }} invoice {{ id periodStart }}
  byProduct {{ name total {{ {MONEY} }} }} byApp {{ name total {{ {MONEY} }} }}
  byRegion {{ name total {{ {MONEY} }} }} }} }} }}"""
DRAFT_LINES = f"""query($id: ID!, $after: String) {{ invoice(id: $id) {{
  lineItems(first: 100, after: $after) {{ pageInfo {{ hasNextPage endCursor }}
  nodes {{ product app region amount {{ {MONEY} }} }} }} }} }}"""


def usage(api: Api, org: str | None, *, app: str | None, by: str) -> dict[str, Any]:
    """The month so far by product, app or region; with `app`, that app's lines only (summed
    here, in whole cents, from the draft's lines)."""
    slug = organization(api, org)
    found = api.query(USAGE, org=slug)["organization"]
    up = (found or {}).get("upcomingInvoice")
    if up is None:
        return {"organization": slug, "period": None, "by": by, "app": app, "groups": [],
                "total": None}  # fmt: skip
    period = up["invoice"]["periodStart"][:7]
    if app is None:
        key = {"product": "byProduct", "app": "byApp", "region": "byRegion"}[by]
        groups = [{"name": g["name"], "total": g["total"]} for g in up[key]]
        return {"organization": slug, "period": period, "by": by, "app": None,
                "groups": groups, "total": up["total"]}  # fmt: skip
    lines: list[dict[str, Any]] = []
    after = None
    while True:
        page = api.query(DRAFT_LINES, id=up["invoice"]["id"], after=after)["invoice"]["lineItems"]
        lines += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    currency = up["total"]["currency"]
    sums: dict[str | None, int] = defaultdict(int)
    for line in lines:
        if line["app"] == app:
            sums[line[by]] += int(line["amount"]["cents"])
    groups = [
        {"name": name, "total": {"cents": str(c), "currency": currency, "formatted": None}}
        for name, c in sorted(sums.items(), key=lambda kv: -kv[1])
    ]
    total = sum(sums.values())
    return {"organization": slug, "period": period, "by": by, "app": app, "groups": groups,
            "total": {"cents": str(total), "currency": currency, "formatted": None}}  # fmt: skip


SET_ALERT = """mutation($input: SetSpendAlertInput!, $key: String) {
  setSpendAlert(input: $input, idempotencyKey: $key) {
    spendAlert { id threshold { cents currency formatted } triggeredAt period }
    userErrors { field code message } } }"""
ALERTS = f"""query($org: String!) {{ organization(slug: $org) {{
  spendAlerts {{ id threshold {{ {MONEY} }} triggeredAt period }} }} }}"""


def cents_of(amount: str) -> int:
    """'250' or '250.50' (major units) as exact cents; more than 2 decimals is a usage error."""
    try:
        value = Decimal(amount)
    except InvalidOperation:
        raise ClientError(f"not an amount: {amount!r}", EXIT_USAGE) from None
    cents = value * 100
    if not value.is_finite() or cents != cents.to_integral_value() or value <= 0:
        raise ClientError(
            f"an amount is more than zero with at most 2 decimals, not {amount!r}", EXIT_USAGE
        )
    return int(cents)


def set_alert(
    api: Api, org: str | None, *, amount: str, currency: str, forecast: bool
) -> dict[str, Any]:
    slug = organization(api, org)
    threshold = {"cents": str(cents_of(amount)), "currency": currency}
    payload: dict[str, Any] = {"organizationSlug": slug, "threshold": threshold}
    if forecast:
        payload["kind"] = "FORECAST"
    try:
        answer = api.query(SET_ALERT, input=payload, key=f"bill-{uuid.uuid4()}")["setSpendAlert"]
    except ClientError as e:
        if forecast and "kind" in e.message:
            raise ClientError(
                "this billing API has no forecast alerts yet (SetSpendAlertInput.kind)",
                EXIT_REFUSED,
            ) from e
        raise
    if answer["userErrors"]:
        problems = "; ".join(f"{u['code']}: {u['message']}" for u in answer["userErrors"])
        raise ClientError(f"the alert was not set: {problems}", EXIT_REFUSED)
    alert = answer["spendAlert"]
    return {"organization": slug, "forecast": forecast, "alert": alert}


def alerts(api: Api, org: str | None) -> dict[str, Any]:
    slug = organization(api, org)
    found = api.query(ALERTS, org=slug)["organization"]
    if found is None:
        raise ClientError(f"no organization {slug!r} for this token", EXIT_REFUSED)
    return {"organization": slug, "alerts": found["spendAlerts"]}
