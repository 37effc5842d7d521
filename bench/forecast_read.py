"""What the projection costs where it runs (`make bench-forecast-read`): upcomingInvoice's read
of a draft (models/usage/upcoming.py: the lines, then models/usage/forecast.py), in-process and
over HTTP against `billing serve`, for drafts of 10, 100 and 1,000 lines; the pure forecast()
alone; and one beat tick of the forecast alerts (models/alerts.py evaluate_forecasts) over
ORGS organizations. A scratch database, billing_bench_forecast (BENCH_DB + "_forecast").

Prints one JSON line.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import free_port, fresh_database  # noqa: E402
from models import alerts, organizations, prices, tables  # noqa: E402
from models.db import make_engine, session_factory, transaction  # noqa: E402
from models.tables import SpendAlertKind, TokenScope  # noqa: E402
from models.usage import ingest, upcoming  # noqa: E402
from models.usage.forecast import Kind, LineUsage, forecast  # noqa: E402

SIZES = (10, 100, 1_000)
READS = 200
ORGS = 200  # with a forecast alert each, 20 lines each, for the beat tick
DB = os.environ.get("BENCH_DB", "billing_bench") + "_forecast"
QUERY = """query($slug: String!) { organization(slug: $slug) { upcomingInvoice {
  total { cents } projectedTotal { cents } projection { low { cents } high { cents } method }
  byProduct { name total { cents } projectedTotal { cents } }
  byApp { name total { cents } projectedTotal { cents } }
  byRegion { name total { cents } projectedTotal { cents } } } } }"""


def ms(samples: list[float]) -> dict[str, float]:
    s = sorted(samples)
    return {"p50": round(statistics.median(s), 3), "p99": round(s[int(0.99 * (len(s) - 1))], 3)}


def seed(factory, now: datetime) -> None:  # type: ignore[no-untyped-def]
    start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    with transaction(factory) as s:
        for product, unit, price in (
            ("machines-shared-cpu", "vCPU-second", Decimal("0.000027006173")),
            ("egress", "GB", Decimal(2)),
        ):
            prices.set_price(s, product=product, unit=unit, currency="USD", unit_price=price,
                             effective_from=start - timedelta(days=60), now=now)  # fmt: skip
    orgs = [(f"n{n}", n) for n in SIZES] + [(f"tick-{i}", 20) for i in range(ORGS)]
    for slug, n in orgs:
        with transaction(factory) as s:
            org = organizations.create(s, slug=slug, name=slug, billing_email=f"b@{slug}.example",
                                       default_currency="USD")  # fmt: skip
            if slug.startswith("tick-"):
                alerts.set_spend_alert(s, org, threshold_cents=10**9, currency="USD", now=now,
                                       kind=SpendAlertKind.FORECAST)  # fmt: skip
            events = [
                ingest.UsageEventInput(
                    id=f"{slug}-{i}",
                    organization_slug=slug,
                    product="egress" if i % 4 == 0 else "machines-shared-cpu",
                    quantity="3.5" if i % 4 == 0 else "3600",
                    occurred_at=max(start, now - timedelta(hours=1 + i % 48)),
                    app=f"app-{i}",
                    region="ams",
                )
                for i in range(n)
            ]
            assert ingest.record_usage(s, events, now=now).rejected == []


def main() -> None:
    url = fresh_database(DB)
    engine = make_engine(url, pool_size=2)
    factory = session_factory(engine)
    now = datetime.now(UTC)
    seed(factory, now)
    out: dict[str, object] = {"bench": "forecast-read", "reads": READS}
    with factory() as s:
        ids = dict(s.execute(sa.text("SELECT slug, id FROM organizations")).all())
        for n in SIZES:
            samples = []
            for i in range(READS + 20):
                t = time.perf_counter()
                up = upcoming.upcoming(s, ids[f"n{n}"], as_of=now)
                s.rollback()
                if i >= 20:
                    samples.append((time.perf_counter() - t) * 1000)
            assert up is not None and len(up.lines) == n
            out[f"upcoming_in_process_{n}_lines_ms"] = ms(samples)
    lines = [LineUsage(Kind.CONTINUOUS, 1000 + i, now - timedelta(days=3), now) for i in range(100)]
    t = time.perf_counter()
    for _ in range(1000):
        forecast(
            lines,
            as_of=now,
            period_start=now - timedelta(days=5),
            period_end=now + timedelta(days=25),
        )
    # 1000 runs: the seconds they took are the milliseconds one takes
    out["forecast_pure_100_lines_ms"] = round(time.perf_counter() - t, 3)
    ticks = []
    for _ in range(5):
        with factory() as s:
            t = time.perf_counter()
            fired = alerts.evaluate_forecasts(s, now=now)
            ticks.append((time.perf_counter() - t) * 1000)
            s.rollback()
    assert fired == 0
    out[f"forecast_alert_tick_{ORGS}_orgs_ms"] = ms(ticks)
    # Over HTTP, the whole upcomingInvoice field (GraphQL, auth, the read), as a member would.
    with transaction(factory) as s:
        org = s.get_one(tables.Organization, ids["n100"])
        token, _ = organizations.create_token(
            s, scope=TokenScope.MEMBER, organization=org, name="bench"
        )
    engine.dispose()
    port = free_port()
    env = {**os.environ, "DATABASE_URL": url}
    server = subprocess.Popen([sys.executable, "-m", "cli", "serve", "--port", str(port)], cwd=ROOT,
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10) as client:
            for _ in range(200):
                try:
                    if client.get("/healthz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.1)
            headers = {"Authorization": f"Bearer {token}"}
            body = {"query": QUERY, "variables": {"slug": "n100"}}
            samples = []
            for i in range(READS + 20):
                t = time.perf_counter()
                r = client.post("/graphql", json=body, headers=headers)
                if i >= 20:
                    samples.append((time.perf_counter() - t) * 1000)
                assert r.status_code == 200 and "errors" not in r.json(), r.text
            out["upcoming_http_100_lines_ms"] = ms(samples)
    finally:
        server.terminate()
        server.wait(timeout=10)
    out["loadavg_1m"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
