"""The dashboard in a real browser, for issue 22's readable bills: every group table of the
month so far adds up to the month's total (with "+N more" past 8 rows), the invoice page's
lines read in human units and add up to the total, and a finalized invoice links Pay and PDF.
Uses the same server and Chromium set-up as tests/test_dashboard_browser.py."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from demo import prices as demo_prices
from models import prices
from models.usage import ingest
from models.usage.ingest import UsageEventInput
from tests.factories import SHARDS, make_invoice, make_org, make_token
from tests.test_dashboard_browser import BROWSER_ARGS, SHOTS, _chromium_or_skip, _serve

APPS = [f"app-{i:02d}" for i in range(11)]
REGIONS = ["ams", "fra", "lhr", "cdg", "iad", "ord", "sjc", "lax", "sea", "yyz"]


@dataclass
class Shop:
    base_url: str
    member: str
    finalized_id: str


@pytest.fixture
def shop(committed: sessionmaker[Session], database_url: str, redis_url: str) -> Iterator[Shop]:
    now = datetime.now(UTC)
    at = max(now - timedelta(minutes=1), now.replace(day=1, hour=0, minute=0, second=1))
    with committed() as s, s.begin():
        org = make_org(s, slug="units-co")
        member = make_token(s, org)
        start = datetime(2025, 1, 1, tzinfo=UTC)
        for product, unit, price, name, display, factor in (
            ("machines-shared-cpu", "vCPU-second", demo_prices.SHARED_VCPU_SECOND, "Shared CPU",
             "vCPU-month", "2592000"),
            ("machines-memory", "GB-second", demo_prices.MEMORY_GB_SECOND, "Memory",
             "GB-month", "2592000"),
            ("egress-na-eu", "GB", "2", "Egress", None, None),
        ):  # fmt: skip
            prices.set_price(
                s, product=product, unit=unit, currency="USD", unit_price=price,
                effective_from=start, now=start, display_name=name, display_unit=display,
                display_factor=factor,
            )  # fmt: skip
        events = []
        for i, app in enumerate(APPS):
            region = REGIONS[i % len(REGIONS)]
            for product, quantity in (
                ("machines-shared-cpu", 86_400 * (i + 1)),
                ("machines-memory", 43_200 * (i + 2)),
                ("egress-na-eu", i + 1),
            ):
                events.append(
                    UsageEventInput(
                        id=f"{app}-{product}",
                        organization_slug="units-co",
                        product=product,
                        quantity=str(quantity),
                        occurred_at=at,
                        app=app,
                        region=region,
                    )
                )
        assert ingest.record_usage(s, events, now=now).rejected == []
        done = make_invoice(s, org, status="open", lines=2)
        s.execute(
            sa.text(
                "UPDATE invoice_sync SET hosted_invoice_url = 'http://127.0.0.1:9/i/in_x',"
                " invoice_pdf_url = 'http://127.0.0.1:9/i/in_x/pdf' WHERE invoice_id = :i"
            ),
            {"i": done.id},
        )
    assert SHARDS
    with _serve(database_url, redis_url) as base_url:
        yield Shop(base_url, member, done.public_id)


def _cents(locator: object) -> list[int]:
    return [int(c) for c in locator.evaluate_all("rs => rs.map(r => r.dataset.cents)")]  # type: ignore[attr-defined]


def test_every_group_table_adds_up_to_the_total_and_lines_read_in_human_units(
    shop: Shop,
) -> None:
    executable = _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1400})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.goto(f"{shop.base_url}/dashboard#token={shop.member}")

        # The month so far: by product (3 rows), by app (11: 7 and "+4 more"), by region (10).
        tables = page.locator("table.sofar-group")
        expect(tables).to_have_count(3)
        seen = {}
        for table in tables.all():
            key = table.get_attribute("data-group")
            total = int(table.locator("tfoot [data-cents]").get_attribute("data-cents") or "-1")
            rows = table.locator("tbody tr")
            assert sum(_cents(rows)) == total > 0, key
            seen[key] = (rows.count(), table.locator("tr.more").count())
        assert seen == {"product": (3, 0), "app": (8, 1), "region": (8, 1)}
        expect(page.locator("table.sofar-group[data-group=app] tr.more")).to_contain_text("+4 more")
        page.screenshot(path=SHOTS / "sofar-groups.png", full_page=True)

        # The draft: lines in human units; lines, apps and regions each add up to its total.
        page.locator("#sofar a", has_text="the draft").click()
        total = page.locator(".invoice-head .total")
        expect(total).to_be_visible()
        invoice_cents = int(total.get_attribute("data-cents") or "-1")
        lines = page.locator("table.lines tbody tr")
        expect(lines).to_have_count(len(APPS) * 3)
        assert sum(_cents(lines)) == invoice_cents
        for group in ("app", "region"):
            assert sum(_cents(page.locator(f"table.group[data-group={group}] tbody tr"))) == (
                invoice_cents
            )
        cpu = page.locator("table.lines tbody tr", has_text="Shared CPU, app-00 in ams")
        expect(cpu.locator("[data-field=displayUnit]")).to_have_text("vCPU-month")
        expect(cpu.locator("[data-field=displayQuantity]")).to_have_text("0.033333")
        expect(cpu.locator("[data-field=displayUnitPrice]")).to_have_text("$0.70 / vCPU-month")
        mem = page.locator("table.lines tbody tr", has_text="Memory, app-01 in fra")
        expect(mem.locator("[data-field=displayUnitPrice]")).to_have_text("$5.00 / GB-month")
        assert page.locator(".invoice-head .links a").count() == 0  # a draft: nothing to pay
        page.screenshot(path=SHOTS / "draft-units.png", full_page=True)

        # A finalized invoice synced to Stripe: Pay and PDF.
        page.goto(f"{shop.base_url}/dashboard#/invoices/{shop.finalized_id}")
        expect(page.locator(".invoice-head a.pay")).to_have_attribute(
            "href", "http://127.0.0.1:9/i/in_x"
        )
        expect(page.locator(".invoice-head a.pdf")).to_have_attribute(
            "href", "http://127.0.0.1:9/i/in_x/pdf"
        )
        page.screenshot(path=SHOTS / "pay-links.png", full_page=True)
        browser.close()
    assert errors == []
