"""Organization.upcomingInvoice benchmark (`make bench-upcoming`): one JSON line.

Its own database (`billing_bench_upcoming`, or `$BENCH_UPCOMING_DB`). One organization per draft
size (30 and 100 usage lines by default, made by the ingest), each with a support-plan
subscription, so the preview reads the draft's lines and adds the recurring line. One API
process (`billing serve --workers 1`), one client: 30 warm-up requests, then 300 timed ones per
size; p50 and p99 in milliseconds. The query asks what the dashboard's "so far" panel asks
(totals and the three breakdowns); `--with-lines` adds the `lines` list.

    python bench/upcoming.py [--lines 30,100] [--port 0] [--with-lines]
"""

from __future__ import annotations

import argparse
import json
import os
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import httpx
from common import cli, free_port, fresh_database, log, server_urls, start, stop, wait_http

from models import organizations, prices, tables
from models.db import make_engine, session_factory, transaction
from models.tables import TokenScope
from models.usage import ingest
from models.usage.ingest import UsageEventInput

GROUPS = "name total { cents } projectedTotal { cents }"
QUERY = (
    "query($org: String!) { organization(slug: $org) { upcomingInvoice { asOf total { cents } "
    f"projectedTotal {{ cents }} byProduct {{ {GROUPS} }} byApp {{ {GROUPS} }} "
    f"byRegion {{ {GROUPS} }} LINES }} }} }}"
)


def seed(url: str, sizes: list[int], now: datetime) -> str:
    """An organization `o<n>` with an n-line draft this month and a plan; returns an admin token."""
    factory = session_factory(make_engine(url, pool_size=1))
    with transaction(factory) as s:
        since = now - timedelta(days=400)
        for product, unit, price in (("egress", "GB", "2"), ("support-plan", "month", "2900")):
            prices.set_price(
                s,
                product=product,
                unit=unit,
                currency="USD",
                unit_price=price,
                effective_from=since,
                now=since,
            )
        for n in sizes:
            org = organizations.create(
                s,
                slug=f"o{n}",
                name=f"O {n}",
                billing_email=f"ap@o{n}.example",
                default_currency="USD",
            )
            assert org.id is not None
            s.add(
                tables.Subscription(
                    organization_id=org.id,
                    product="support-plan",
                    description="Support plan",
                    quantity=Decimal(1),
                    since=since.date(),
                )
            )
            events = [
                UsageEventInput(
                    id=f"{n}-{i}",
                    organization_slug=org.slug,
                    product="egress",
                    quantity=str(i + 1),
                    occurred_at=now - timedelta(minutes=5),
                    app=f"app{i % 7}",
                    region=f"r{i:03d}",
                )
                for i in range(n)
            ]
            assert ingest.record_usage(s, events, now=now).rejected == []
        token, _ = organizations.create_token(
            s, scope=TokenScope.ADMIN, organization=None, name="bench"
        )
    return token


def timed(url: str, token: str, slug: str, query: str, n: int = 300) -> tuple[float, float]:
    body = {"query": query, "variables": {"org": slug}}
    headers = {"Authorization": f"Bearer {token}"}
    times = []
    with httpx.Client(timeout=10) as client:
        for _ in range(30):
            client.post(url, json=body, headers=headers)
        for _ in range(n):
            t = time.perf_counter()
            r = client.post(url, json=body, headers=headers)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200 and "errors" not in r.json(), r.text
    times.sort()
    return times[len(times) // 2] * 1000, times[int(len(times) * 0.99)] * 1000


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lines", default="30,100")
    ap.add_argument("--port", type=int, default=0, help="the API's port (0: any free one)")
    ap.add_argument("--with-lines", action="store_true")
    args = ap.parse_args()
    sizes = [int(x) for x in args.lines.split(",")]
    url = fresh_database(os.environ.get("BENCH_UPCOMING_DB", "billing_bench_upcoming"))
    token = seed(url, sizes, datetime.now(UTC))
    query = QUERY.replace(
        "LINES", "lines { kind product amount { cents } }" if args.with_lines else ""
    )
    port = args.port or free_port()
    _, redis_url = server_urls()
    proc = start(
        cli("serve", "--port", str(port), "--workers", "1"),
        {"DATABASE_URL": url, "REDIS_URL": redis_url},
    )
    result: dict[str, object] = {"benchmark": "upcoming", "with_lines": args.with_lines}
    try:
        wait_http(f"http://127.0.0.1:{port}/healthz")
        load_before = os.getloadavg()
        for n in sizes:
            p50, p99 = timed(f"http://127.0.0.1:{port}/graphql", token, f"o{n}", query)
            log(f"{n} lines: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
            result[f"p50_ms_{n}_lines"] = round(p50, 2)
            result[f"p99_ms_{n}_lines"] = round(p99, 2)
        result |= {
            "target": "p50 <= 8 ms",
            "loadavg_before": [round(x, 2) for x in load_before],
            "loadavg_after": [round(x, 2) for x in os.getloadavg()],
            "cores": os.cpu_count(),
        }
    finally:
        stop(proc)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
