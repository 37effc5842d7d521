"""The reference dashboard in a real browser (Playwright driving the system Chromium) against a
running server with data: the chart's bars and totals, keyset paging, an invoice's grouped
subtotals, a member's spend alerts, and the operator's last close and Resync button. Screenshots go to test-output/browser/.

Where Chromium cannot be had the test skips LOUDLY on a developer machine and FAILS in CI
(`.ci/run` sets BILLING_REQUIRE_BROWSER=1 after installing Debian's chromium).
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
import uvicorn
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from gql.app import create_app
from models import alerts, rollup, tables
from models.close import cycle
from models.db import make_engine
from models.invoices import credit_notes, lifecycle
from models.invoices.credit_notes import CreditLineInput
from models.sync_state import outbox
from settings import PROJECT_ROOT, Settings
from tests.factories import SHARDS, make_org, make_token, usage_line

CHROMIUM = os.environ.get("BILLING_CHROMIUM", "/usr/bin/chromium")
SHOTS = PROJECT_ROOT / "test-output" / "browser"
YEAR = datetime.now(UTC).year  # the dashboard charts this year and the one before by default
LAST_CLOSE = cycle.previous_month(datetime.now(UTC).date().replace(day=1))
THIS_MONTH = datetime.now(UTC).date().replace(day=1)


def _chromium_or_skip() -> str:
    path = CHROMIUM if Path(CHROMIUM).exists() else shutil.which("chromium")
    if path:
        return path
    message = (
        "\n\n*** BROWSER TEST NOT RUN: no Chromium at /usr/bin/chromium. ***\n"
        "*** Install it with: apt-get install -y chromium                ***\n"
    )
    if os.environ.get("BILLING_REQUIRE_BROWSER") == "1":
        pytest.fail(message)
    warnings.warn(message, stacklevel=1)
    pytest.skip(message)


@dataclass
class World:
    base_url: str
    member_token: str
    admin_token: str
    failed_invoice_public_id: str
    org_id: int


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _make_data(factory: sessionmaker[Session]) -> tuple[str, str, str, int]:
    now = datetime(YEAR, 1, 1, tzinfo=UTC)
    with factory() as s, s.begin():
        org = make_org(s, slug="browser-co")
        member = make_token(s, org)
        admin = make_token(s, None, admin=True)
        months = [date(YEAR - 1, m, 1) for m in range(1, 13)] + [date(YEAR, 1, 1), date(YEAR, 2, 1)]
        failed_id = ""
        for i, start in enumerate(months):
            end = date(start.year + (start.month == 12), start.month % 12 + 1, 1)
            inv = lifecycle.create_draft(
                s, org, currency="USD", period_start=start, period_end=end, now=now
            )
            lines = [
                usage_line(quantity=str(100 + i), unit_price="1.5", app="web", region="ams"),
                usage_line(
                    quantity="40", unit_price="2", app="worker", region="iad", product="egress"
                ),
                usage_line(quantity="3", unit_price="125", app="web", region="iad", product="ipv4"),
            ]
            lifecycle.add_lines(s, inv, lines, now=now)
            inv = lifecycle.finalize(s, inv, now=now, rollup_shards=SHARDS)
            if i == 5:  # June: the first row of page 2 (after the open draft), the invoice opened
                credit_notes.issue(
                    s,
                    inv,
                    reason="duplicate",
                    memo="ipv4 billed twice",
                    lines=[CreditLineInput(description="ipv4 billed twice", amount_cents=100)],
                    settlement=None,
                    created_by="test",
                    now=now,
                    rollup_shards=SHARDS,
                )
            if i == 3:
                failed_id = inv.public_id
                row = outbox.get(s, inv.id or 0)
                assert row is not None
                row.state = tables.SyncStatus.FAILED
                row.attempts = 8
                row.next_attempt_at = None
                row.last_error_code = "resource_missing"
                row.last_error_message = "No such customer: 'cus_missing'"
                row.last_error_request_id = "req_browser"
        eur = lifecycle.create_draft(
            s,
            org,
            currency="EUR",
            period_start=date(YEAR, 1, 1),
            period_end=date(YEAR, 2, 1),
            now=now,
        )
        lifecycle.add_lines(s, eur, [usage_line(quantity="10", unit_price="99")], now=now)
        lifecycle.finalize(s, eur, now=now, rollup_shards=SHARDS)
        assert org.id is not None
        # The open month: a draft so far (the chart's "so far" bar).
        open_draft = lifecycle.create_draft(
            s, org, currency="USD", period_start=THIS_MONTH,
            period_end=(THIS_MONTH + timedelta(days=32)).replace(day=1), now=now,
        )  # fmt: skip
        lifecycle.add_lines(s, open_draft, [usage_line(quantity="7", unit_price="100")], now=now)
        # A spend alert that fired (for January), one never reached, and a forecast alert.
        fired = alerts.set_spend_alert(s, org, threshold_cents=10_000, currency="USD", now=now)
        alerts.set_spend_alert(s, org, threshold_cents=9_000_000, currency="USD", now=now)
        alerts.set_spend_alert(s, org, threshold_cents=9_000_000, currency="USD", now=now,
                               kind=tables.SpendAlertKind.FORECAST)  # fmt: skip
        s.add(
            tables.SpendAlertFiring(
                alert_id=fired.id,
                period_start=date(YEAR, 1, 1),
                invoice_id=eur.id,
                total_cents=12_345,
                triggered_at=datetime(YEAR, 1, 20, 8, 30, tzinfo=UTC),
            )
        )
        # The last close (the previous month's, by the real clock): one draft failed.
        s.add(
            tables.BillingRun(
                period_start=LAST_CLOSE,
                started_at=datetime(LAST_CLOSE.year, LAST_CLOSE.month, 1, 2, tzinfo=UTC),
                drafts=40,
                finalized=37,
                skipped=2,
                failed=1,
                last_error="inv_browser: UNKNOWN_PRODUCT no USD price for 'support-plan'",
                updated_at=now,
            )
        )
        return member, admin, failed_id, org.id


@contextmanager
def _serve(database_url: str, redis_url: str) -> Iterator[str]:
    app = create_app(
        Settings(database_url=database_url, redis_url=redis_url),
        engine=make_engine(database_url, pool_size=2),
        redis=redis.Redis.from_url(redis_url, socket_timeout=1),
        enqueue_sync=lambda _id: None,
    )
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    assert server.started, "the test server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        app.state.engine.dispose()


@pytest.fixture
def world(committed: sessionmaker[Session], database_url: str, redis_url: str) -> Iterator[World]:
    member, admin, failed_id, org_id = _make_data(committed)
    with _serve(database_url, redis_url) as base_url:
        yield World(base_url, member, admin, failed_id, org_id)


BROWSER_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Collects Content-Security-Policy violations the page reports, before any of its own scripts run.
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}:${e.lineNumber}`);
});
"""
SECURITY_HEADERS = {
    "x-frame-options": "DENY",
    "referrer-policy": "no-referrer",
    "x-content-type-options": "nosniff",
}


def _assert_security_headers(headers: dict[str, str], *, inline_styles: bool = False) -> None:
    for name, value in SECURITY_HEADERS.items():
        assert headers.get(name) == value, (name, headers)
    csp = {
        d.strip().split(" ", 1)[0]: d.strip().split(" ", 1)[1:]
        for d in headers.get("content-security-policy", "").split(";")
        if d.strip()
    }
    assert csp.get("default-src") == ["'none'"], csp
    assert csp.get("frame-ancestors") == ["'none'"], csp
    assert csp.get("script-src") == ["'self'"], csp  # no inline script, no eval, no other host
    if not inline_styles:
        assert csp.get("style-src") == ["'self'"], csp


MONTH_NAMES = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
SYMBOLS = {"USD": "$", "EUR": "€"}


def _formatted(cents: int, currency: str) -> str:
    return f"{SYMBOLS[currency]}{cents // 100:,}.{cents % 100:02d}"


def _assert_chart_axes(page: Any, expected: dict[tuple[str, str], int]) -> None:
    """Each chart labels every bar with its month and each January with its year, and has an
    amount axis: round, evenly spaced ticks from zero to at or above the highest bar, each
    labelled with its amount in the chart's currency."""
    for currency in ("USD", "EUR"):
        chart = page.locator(f'.chart[data-currency="{currency}"]')
        months = sorted(m for m, c in expected if c == currency)
        labels = chart.locator(".bar .month-label").all_text_contents()
        assert labels == [MONTH_NAMES[int(m[5:7]) - 1] for m in months]
        years = chart.locator(".bar .year-label").all_text_contents()
        assert years == [str(YEAR - 1), str(YEAR)]
        ticks = chart.locator(".y-tick")
        values = [int(t.get_attribute("data-cents") or "-1") for t in ticks.all()]
        texts = [t.strip() for t in chart.locator(".y-tick .y-label").all_text_contents()]
        assert texts == [_formatted(v, currency) for v in values]
        step = values[1] - values[0]
        assert values[0] == 0 and 2 <= len(values) <= 5
        assert values == [step * i for i in range(len(values))]
        assert str(step).rstrip("0") in ("1", "2", "5"), step  # 1, 2 or 5 x 10^k
        highest = max(v for (m, c), v in expected.items() if c == currency)
        assert values[-2] < highest <= values[-1] or (highest == 0 and values == [0, 1])


def test_dashboard_in_a_real_browser(world: World, committed: sessionmaker[Session]) -> None:
    executable = _chromium_or_skip()
    from playwright.sync_api import expect, sync_playwright

    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 1000})
        errors: list[str] = []
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.add_init_script(CSP_LISTENER)

        # Member: chart of monthly spend, one bar per month of the two default years per currency.
        response = page.goto(f"{world.base_url}/dashboard#token={world.member_token}")
        assert response is not None
        _assert_security_headers(response.headers)
        bars = page.locator(".chart .bar")
        expect(bars).to_have_count(12 * 2 * 2)
        assert "token=" not in page.url, "the token must be dropped from the address bar"
        with committed() as s:
            expected = {
                (m.label, m.currency): m.total_cents
                for m in rollup.monthly_summary(
                    s, scope_id=world.org_id, years=[YEAR - 1, YEAR], today=THIS_MONTH
                )
            }
        shown = {
            (b.get_attribute("data-month"), b.get_attribute("data-currency")): int(
                b.get_attribute("data-cents") or "0"
            )
            for b in bars.all()
        }
        assert shown == expected
        assert shown[(f"{YEAR - 1}-03", "USD")] > 0 and shown[(f"{YEAR - 1}-03", "EUR")] == 0
        _assert_chart_axes(page, expected)
        # The open month: its draft so far ($7.00), marked so.
        so_far = page.locator('.chart[data-currency="USD"] .bar.so-far')
        expect(so_far).to_have_count(1)
        expect(so_far).to_have_attribute("data-month", f"{THIS_MONTH:%Y-%m}")
        expect(so_far).to_have_attribute("data-cents", "700")
        expect(so_far.locator(".so-far-label")).to_have_text("so far")
        page.screenshot(path=SHOTS / "home.png", full_page=True)

        # Keyset paging: 16 invoices (15 and the open draft), 10 a page; page two the other 6.
        rows = page.locator("table.invoices tbody tr")
        expect(rows).to_have_count(10)
        first_page = set(rows.evaluate_all("rs => rs.map(r => r.dataset.invoice)"))
        page.click("#next")
        expect(page.locator("#page")).to_have_text("page 2")
        expect(rows).to_have_count(6)
        second_page = set(rows.evaluate_all("rs => rs.map(r => r.dataset.invoice)"))
        assert not first_page & second_page and len(first_page | second_page) == 16

        # Spend alerts: the threshold that fired, with its period, and the one never reached.
        shown_alerts = page.locator("#alerts li")
        expect(shown_alerts).to_have_count(3)
        expect(shown_alerts.nth(0)).to_contain_text("$100.00")
        expect(shown_alerts.nth(0)).to_contain_text(f"fired for {YEAR}-01")
        expect(shown_alerts.nth(0)).to_have_attribute("data-fired", "yes")
        expect(shown_alerts.nth(1)).to_contain_text("not reached yet")
        expect(shown_alerts.nth(2)).to_have_attribute("data-kind", "FORECAST")
        expect(shown_alerts.nth(2)).to_contain_text("forecast")
        assert page.locator("#lastclose").count() == 0  # operators only
        page.screenshot(path=SHOTS / "page2.png", full_page=True)

        # An invoice: subtotals by app and by region each add up to the invoice total.
        rows.first.locator("a").click()
        total = page.locator(".invoice-head .total")
        expect(total).to_be_visible()
        invoice_cents = int(total.get_attribute("data-cents") or "-1")
        for group in ("app", "region"):
            table = page.locator(f"table.group[data-group={group}]")
            parts = [
                int(c)
                for c in table.locator("tbody tr").evaluate_all(
                    "rs => rs.map(r => r.dataset.cents)"
                )
            ]
            assert sum(parts) == invoice_cents
            assert (
                int(table.locator("tfoot [data-cents]").get_attribute("data-cents") or "-1")
                == invoice_cents
            )
        # Its credit note, and the amount due after it.
        expect(page.locator(".credit-notes tr.credit-note")).to_have_count(1)
        expect(page.locator(".credit-notes")).to_contain_text("-CN1")
        due = page.locator(".invoice-head .amount-due")
        assert int(due.get_attribute("data-cents") or "-1") == invoice_cents - 100
        page.screenshot(path=SHOTS / "invoice.png", full_page=True)

        # Operator: the failed sync with Stripe's message, and Resync moves it to PENDING.
        page.evaluate("sessionStorage.clear()")
        page.goto(f"{world.base_url}/dashboard#token={world.admin_token}")
        failed_row = page.locator(f"#failed tr[data-invoice='{world.failed_invoice_public_id}']")
        expect(failed_row).to_contain_text("No such customer")
        expect(failed_row.locator("[data-sync]")).to_have_attribute("data-sync", "FAILED")
        # The last close: its period, counts and failure, and what still waits for Stripe.
        close = page.locator("#lastclose")
        expect(close.locator("[data-field=period]")).to_have_text(f"{LAST_CLOSE:%Y-%m}")
        expect(close.locator("[data-field=finalized]")).to_contain_text("37 of 40 drafts")
        expect(close.locator("[data-field=skipped]")).to_have_text("2")
        expect(close.locator("[data-field=failed]")).to_have_text("1")
        expect(close.locator("[data-field=pending]")).to_have_text("0")
        expect(close.locator("[data-field=finishedAt]")).to_have_text("not finished")
        expect(close.locator("[data-field=lastError]")).to_contain_text("UNKNOWN_PRODUCT")
        # 14 USD + 1 EUR finalized, one of them FAILED; the rest PENDING (nothing syncs here).
        expect(close.locator("[data-field=waiting]")).to_contain_text("14 invoices")
        page.screenshot(path=SHOTS / "operator.png", full_page=True)
        failed_row.locator("button.resync").click()
        expect(failed_row.locator("[data-sync]")).to_have_attribute("data-sync", "PENDING")
        page.screenshot(path=SHOTS / "operator-resynced.png", full_page=True)
        violations = page.evaluate("window.__cspViolations.slice()")
        page_errors = list(errors)
        # The listener works: an inline script injected now is blocked and reported.
        page.evaluate(
            "() => { const s = document.createElement('script');"
            " s.textContent = 'window.__ran = 1'; document.body.appendChild(s); }"
        )
        page.wait_for_function(f"window.__cspViolations.length > {len(violations)}")
        assert page.evaluate("window.__ran") is None
        browser.close()

    assert violations == []
    assert page_errors == []
    with committed() as s:
        state = s.execute(
            sa.text(
                "SELECT state, attempts FROM invoice_sync s JOIN invoices i ON i.id = s.invoice_id"
                " WHERE i.public_id = :p"
            ),
            {"p": world.failed_invoice_public_id},
        ).one()
    assert tuple(state) == ("pending", 0)


def test_graphiql_works_with_no_internet(
    committed: sessionmaker[Session], database_url: str, redis_url: str
) -> None:
    """Every request to another host is refused, as on a machine with no internet: GraphiQL
    still renders its editor, and a query with a token from its Headers tab answers."""
    executable = _chromium_or_skip()
    from playwright.sync_api import Route, expect, sync_playwright

    with committed() as s, s.begin():
        admin = make_token(s, None, admin=True)
    SHOTS.mkdir(parents=True, exist_ok=True)
    with _serve(database_url, redis_url) as base_url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=executable, args=BROWSER_ARGS)
        page = browser.new_page(viewport={"width": 1200, "height": 800})
        outside: list[str] = []
        errors: list[str] = []

        def offline(route: Route) -> None:
            if route.request.url.startswith(base_url + "/"):
                route.continue_()
            else:
                outside.append(route.request.url)
                route.abort("internetdisconnected")

        page.route("**/*", offline)
        page.on("pageerror", lambda e: errors.append(str(e)))
        page.add_init_script(CSP_LISTENER)
        # GraphiQL reads persisted headers from localStorage: the token a user pasted earlier.
        page.add_init_script(
            f"""localStorage.setItem('graphiql:headers', '{{"Authorization": "Bearer {admin}"}}')"""
        )
        response = page.goto(f"{base_url}/graphql")
        assert response is not None and response.status == 200
        _assert_security_headers(response.headers, inline_styles=True)
        editor = page.locator(".graphiql-query-editor .CodeMirror")
        expect(editor).to_be_visible(timeout=15_000)
        expect(page.locator("#graphiql")).not_to_contain_text("Loading")
        page.locator(".graphiql-execute-button").click()
        expect(page.locator(".graphiql-response")).to_contain_text('"isAdmin": true')
        page.screenshot(path=SHOTS / "graphiql.png", full_page=True)
        violations = page.evaluate("window.__cspViolations")
        browser.close()

    assert outside == [] and errors == [] and violations == []
