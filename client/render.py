"""The commands' answers as rich tables for people (the JSON shape is the data itself)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.table import Table


def money(m: dict[str, Any] | None) -> str:
    if m is None:
        return "-"
    if m.get("formatted"):
        return str(m["formatted"])
    return f"{Decimal(m['cents']) / 100:,.2f} {m['currency']}"  # exact: Decimal, not float


def unit_price(cents: str, unit: str, currency: str) -> str:
    """Minor units per unit (exact text) as major units: "70" -> "0.70 USD / vCPU-month"."""
    major = Decimal(cents) / 100
    text = f"{major:f}"
    if "." in text:
        whole, frac = text.split(".")
        text = f"{whole}.{frac.rstrip('0').ljust(2, '0')}"
    else:
        text += ".00"
    return f"{text} {currency} / {unit}"


def now(c: Console, d: dict[str, Any]) -> None:
    if d["period"] is None:
        c.print(f"{d['name']}: no usage this month yet.")
        return
    c.print(
        f"[bold]{d['name']}[/bold] {d['period']} so far: [bold]{money(d['total'])}[/bold], "
        f"projected {money(d['projected'])} by {d['period_end']} "
        f"[dim](as of {d['as_of'][:16].replace('T', ' ')} UTC, {d['lines']} lines)[/dim]"
    )
    p = d["projection"]
    c.print(f"Projected range {money(p['low'])} to {money(p['high'])} [dim]({p['method']})[/dim]")
    t = Table(title="Top apps")
    t.add_column("App")
    t.add_column("So far", justify="right")
    for a in d["top_apps"]:
        t.add_row(a["app"] or "(no app)", money(a["total"]))
    if d["more_apps"]:
        t.add_row(f"+{d['more_apps']} more", "")
    c.print(t)


def invoices(c: Console, d: dict[str, Any]) -> None:
    t = Table(title=f"Invoices ({len(d['invoices'])} of {d['total_count']})")
    for name, justify in (("Number", "left"), ("Period", "left"), ("Status", "left"),
                          ("Payment", "left"), ("Total", "right"), ("Due", "left")):  # fmt: skip
        t.add_column(name, justify=justify)  # type: ignore[arg-type]
    for i in d["invoices"]:
        t.add_row(
            i["number"] or f"draft {i['id']}",
            i["period"],
            i["status"].lower(),
            (i["payment"] or "-").lower(),
            money(i["total"]),
            i["due_date"] or "-",
        )
    c.print(t)


def invoice(c: Console, d: dict[str, Any]) -> None:
    title = d["number"] or f"Draft {d['id']}"
    c.print(f"[bold]{title}[/bold]  {d['status'].lower()}  {d['organization']}  {d['period']}")
    t = Table()
    t.add_column("Description")
    t.add_column("Quantity", justify="right")
    t.add_column("Unit price", justify="right")
    t.add_column("Amount", justify="right")
    for line in d["lines"]:
        t.add_row(
            line["description"],
            f"{line['quantity']} {line['unit']}",
            unit_price(line["unit_price_cents"], line["unit"], d["currency"]),
            money(line["amount"]),
        )
    t.add_section()
    t.add_row("[bold]Total[/bold]", "", "", f"[bold]{money(d['total'])}[/bold]")
    if d["credit_notes"]:
        t.add_row("Credited", "", "", f"-{money(d['credited_total'])}")
        t.add_row("[bold]Amount due[/bold]", "", "", f"[bold]{money(d['amount_due'])}[/bold]")
    c.print(t)
    if d["credit_notes"]:
        notes = Table(title="Credit notes")
        for name in ("Number", "Status", "Reason", "Total"):
            notes.add_column(name, justify="right" if name == "Total" else "left")
        for n in d["credit_notes"]:
            notes.add_row(n["number"], n["status"].lower(), n["reason"].lower(), money(n["total"]))
        c.print(notes)
    payment = d["payment"]
    if payment:
        extra = f" ({payment['lastFailureMessage']})" if payment.get("lastFailureMessage") else ""
        c.print(f"Payment: {payment['status'].lower()}{extra}")
    elif d["status"] == "PAID":
        c.print("Payment: paid")
    if d["due_date"]:
        c.print(f"Due: {d['due_date']}")
    if d["pay_url"] and d["status"] in ("OPEN", "UNCOLLECTIBLE"):
        c.print(f"Pay: {d['pay_url']}")
    if d["pdf_url"]:
        c.print(f"PDF: {d['pdf_url']}")


def usage(c: Console, d: dict[str, Any]) -> None:
    if d["period"] is None:
        c.print("No usage this month yet.")
        return
    title = f"{d['period']} so far by {d['by']}" + (f", app {d['app']}" if d["app"] else "")
    t = Table(title=title)
    t.add_column(d["by"].capitalize())
    t.add_column("So far", justify="right")
    for g in d["groups"]:
        t.add_row(g["name"] or "(none)", money(g["total"]))
    t.add_section()
    t.add_row("[bold]Total[/bold]", f"[bold]{money(d['total'])}[/bold]")
    c.print(t)


def set_alert(c: Console, d: dict[str, Any]) -> None:
    kind = "forecast alert" if d["forecast"] else "spend alert"
    c.print(f"{kind} at {d['alert']['threshold']['formatted']} set for {d['organization']}")


def alerts(c: Console, d: dict[str, Any]) -> None:
    t = Table(title=f"Spend alerts of {d['organization']}")
    t.add_column("Threshold", justify="right")
    t.add_column("Last fired")
    for a in d["alerts"]:
        fired = f"{a['period']} ({a['triggeredAt'][:16].replace('T', ' ')})" if a["period"] else "-"
        t.add_row(a["threshold"]["formatted"], fired)
    c.print(t)
