"""`bill` (client/) as a user runs it: a separate process talking to a live API server over
HTTP with BILLING_API and BILLING_TOKEN, every command with --json parsed back, the tables for
people, and clear errors with their exit codes for a bad token and an unreachable API."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from demo import prices as demo_prices
from gql.app import create_app
from models import prices
from models.db import make_engine
from models.invoices import credit_notes
from models.invoices.credit_notes import CreditLineInput
from models.usage import ingest
from models.usage.ingest import UsageEventInput
from settings import PROJECT_ROOT, Settings
from tests.factories import SHARDS, make_invoice, make_org, make_token
from tests.live_server import free_port, serve


@dataclass
class Live:
    url: str
    member: str
    admin: str
    number: str


@pytest.fixture
def live(committed: sessionmaker[Session], database_url: str, redis_url: str) -> Iterator[Live]:
    now = datetime.now(UTC)
    at = max(now - timedelta(minutes=1), now.replace(day=1, hour=0, minute=0, second=1))
    start = datetime(2025, 1, 1, tzinfo=UTC)
    with committed() as s, s.begin():
        org = make_org(s, slug="acme")
        member, admin = make_token(s, org), make_token(s, None, admin=True)
        prices.set_price(
            s, product="machines-shared-cpu", unit="vCPU-second", currency="USD",
            unit_price=demo_prices.SHARED_VCPU_SECOND, effective_from=start, now=start,
            display_name="Shared CPU", display_unit="vCPU-month", display_factor="2592000",
        )  # fmt: skip
        events = [
            UsageEventInput(
                id=f"e{i}",
                organization_slug="acme",
                product="machines-shared-cpu",
                quantity=str(2_592_000 * (i + 1)),
                occurred_at=at,
                app=app,
                region=region,
            )
            for i, (app, region) in enumerate(
                [("acme-api", "iad"), ("acme-api", "ams"), ("worker", "iad")]
            )
        ]
        assert ingest.record_usage(s, events, now=now).rejected == []
        done = make_invoice(s, org, status="open", lines=2)
        s.execute(
            sa.text(
                "UPDATE invoice_sync SET hosted_invoice_url = 'http://pay.example/i/1',"
                " invoice_pdf_url = 'http://pay.example/i/1/pdf' WHERE invoice_id = :i"
            ),
            {"i": done.id},
        )
        assert done.number is not None
        number = done.number
        credit_notes.issue(
            s, done, reason="duplicate", memo="billed twice",
            lines=[CreditLineInput(description="goodwill", amount_cents=100)],
            settlement=None, created_by="test", now=now, rollup_shards=SHARDS,
        )  # fmt: skip
    app = create_app(
        Settings(database_url=database_url, redis_url=redis_url),
        engine=make_engine(database_url, pool_size=2),
        redis=redis.Redis.from_url(redis_url, socket_timeout=1),
        enqueue_sync=lambda _id: None,
    )
    with serve(app) as url:
        yield Live(url, member, admin, number)


def bill(live: Live | None, *args: str, token: str | None = None, api: str | None = None) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BILLING_")}
    env["BILLING_API"] = api or (live.url if live else "")
    # A wide terminal: rich wraps at 80 columns when not on a tty, and where a line wraps
    # depends on the amounts, which depend on the clock.
    env["COLUMNS"] = "200"
    if token is not None or live is not None:
        env["BILLING_TOKEN"] = token if token is not None else live.member  # type: ignore[union-attr]
    return subprocess.run(
        [sys.executable, "-m", "client", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def as_json(live: Live, *args: str, token: str | None = None) -> Any:
    out = bill(live, *args, "--json", token=token)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_bill_now_invoices_invoice_usage_and_alerts_against_a_live_api(live: Live) -> None:
    now = as_json(live, "now")
    assert now["organization"] == "acme" and now["total"]["currency"] == "USD"
    # 6 vCPU-months at $0.70: 420.037... cents -> the lines' amounts, summed by the API.
    assert now["total"]["cents"] == str(70 + 140 + 210)
    assert [a["app"] for a in now["top_apps"]] == ["acme-api", "worker"]
    assert [a["total"]["cents"] for a in now["top_apps"]] == ["210", "210"]
    projection = now["projection"]
    assert projection["method"] and projection["total"]["currency"] == "USD"
    assert int(projection["low"]["cents"]) <= int(projection["total"]["cents"])
    assert int(projection["total"]["cents"]) <= int(projection["high"]["cents"])
    assert projection["total"] == now["projected"]

    listed = as_json(live, "invoices")
    numbers = [i["number"] for i in listed["invoices"]]
    assert live.number in numbers
    mine = next(i for i in listed["invoices"] if i["number"] == live.number)
    assert mine["status"] == "OPEN" and mine["pay_url"] == "http://pay.example/i/1"

    inv = as_json(live, "invoice", live.number)
    assert inv["number"] == live.number and inv["pay_url"] == "http://pay.example/i/1"
    assert inv["pdf_url"] == "http://pay.example/i/1/pdf"
    assert sum(int(line["amount"]["cents"]) for line in inv["lines"]) == int(inv["total"]["cents"])
    (note,) = inv["credit_notes"]
    assert note["number"] == f"{live.number}-CN1" and note["status"] == "ISSUED"
    assert note["reason"] == "DUPLICATE" and note["total"]["formatted"] == "$1.00"
    assert inv["credited_total"]["cents"] == "100"
    assert int(inv["amount_due"]["cents"]) == int(inv["total"]["cents"]) - 100

    draft = as_json(live, "invoice", now_draft_id(live))
    cpu = next(
        line for line in draft["lines"] if line["description"] == "Shared CPU, acme-api in ams"
    )
    assert (cpu["quantity"], cpu["unit"], cpu["unit_price_cents"]) == ("2", "vCPU-month", "70")
    assert cpu["exact"] == {
        "quantity": "5184000", "unit": "vCPU-second", "unit_price_cents": "0.000027006173",
    }  # fmt: skip

    by_app = as_json(live, "usage", "--by", "app")
    assert {g["name"]: g["total"]["cents"] for g in by_app["groups"]} == {
        "acme-api": "210", "worker": "210",
    }  # fmt: skip
    regions = as_json(live, "usage", "--app", "acme-api", "--by", "region")
    assert {g["name"]: g["total"]["cents"] for g in regions["groups"]} == {
        "ams": "140",
        "iad": "70",
    }
    assert regions["total"]["cents"] == "210"

    made = as_json(live, "alerts", "set", "250")
    assert made["alert"]["threshold"] == {
        "cents": "25000",
        "currency": "USD",
        "formatted": "$250.00",
    }
    assert [a["threshold"]["cents"] for a in as_json(live, "alerts", "list")["alerts"]] == ["25000"]

    # For people: rich tables with the human units and the pay link.
    text = bill(live, "invoice", now_draft_id(live))
    assert text.returncode == 0, text.stderr
    assert "Shared CPU, acme-api in ams" in text.stdout and "vCPU-month" in text.stdout
    text = bill(live, "invoice", live.number)
    assert "Pay: http://pay.example/i/1" in text.stdout and "PDF:" in text.stdout
    assert f"{live.number}-CN1" in text.stdout and "Amount due" in text.stdout
    assert "Credited" in text.stdout and "-$1.00" in text.stdout
    text = bill(live, "now")
    assert "Top apps" in text.stdout
    low, high = projection["low"]["formatted"], projection["high"]["formatted"]
    assert f"{low} to {high}" in text.stdout


def now_draft_id(live: Live) -> str:
    out = bill(live, "invoices", "--json")
    drafts = [i for i in json.loads(out.stdout)["invoices"] if i["status"] == "DRAFT"]
    return str(drafts[0]["id"])


def test_a_bad_token_and_an_unreachable_api_are_clear_errors_with_exit_codes(live: Live) -> None:
    out = bill(live, "now", token="not-a-token")
    assert out.returncode == 3 and "refused the token" in out.stderr
    assert "Traceback" not in out.stderr
    out = bill(None, "now", token="", api=live.url)
    assert out.returncode == 3 and "BILLING_TOKEN" in out.stderr
    dead = f"http://127.0.0.1:{free_port()}"
    out = bill(live, "invoices", "--json", api=dead)
    assert out.returncode == 4 and "cannot reach the billing API" in out.stderr
    assert json.loads(out.stdout)["exit_code"] == 4
    out = bill(live, "invoice", "NOPE-0001")
    assert out.returncode == 1 and "no invoice" in out.stderr
    out = bill(live, "alerts", "set", "12.345")
    assert out.returncode == 2 and "at most 2 decimals" in out.stderr
    # FORECAST alerts come from another branch: without them, a clear refusal, not a crash.
    out = bill(live, "alerts", "set", "300", "--forecast")
    assert out.returncode in (0, 1), out.stderr
    if out.returncode == 1:
        assert "no forecast alerts yet" in out.stderr
    out = bill(live, "now", token=live.admin)  # an admin names the organization
    assert out.returncode == 2 and "--org" in out.stderr
    assert as_json(live, "now", "--org", "acme", token=live.admin)["organization"] == "acme"


def test_the_client_imports_nothing_of_the_server() -> None:
    for path in Path(PROJECT_ROOT, "client").glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for name in names:
                    top = name.split(".")[0]
                    assert top not in {"gql", "models", "sync", "bootstrap", "settings", "cli"}, (
                        path,
                        name,
                    )
