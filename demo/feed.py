"""`billing feed`: a small simulated metering pipeline for `make run`, so the month so far moves.

Every few seconds it posts to POST /v1/usage what a handful of running machines used since the
last tick (CPU and memory seconds, some egress), as a real pipeline would: fresh event ids, and
now and then a batch re-sent (the API counts it once).
"""

from __future__ import annotations

import random
import sys
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx

from demo import prices as demo_prices
from demo.metered import EGRESS_PRODUCT

# (organization, app, region, vCPUs, GB of memory, machines)
MACHINES = [
    ("acme", "web", "ams", 1, "0.25", 2),
    ("acme", "api", "iad", 2, "0.5", 1),
    ("nimbus-labs", "ingest", "sin", 2, "1", 3),
    ("tiny-ci", "runner", "fra", 1, "0.25", 1),
    ("bigcorp", "gateway", "ord", 4, "2", 4),
    ("eu-analytics", "etl", "cdg", 2, "2", 2),
]


def _batch(rng: random.Random, seconds: float, at: datetime) -> list[dict[str, Any]]:
    events = []
    for org, app, region, cpus, mem, machines in MACHINES:
        busy = seconds * machines * rng.uniform(0.6, 1.0)
        common = {
            "organizationSlug": org,
            "app": app,
            "region": region,
            "occurredAt": at.isoformat(),
        }
        for product, qty in (
            ("machines-shared-cpu", busy * cpus),
            ("machines-memory", busy * float(mem)),
            (EGRESS_PRODUCT[demo_prices.REGION_GROUP[region]], rng.uniform(0, 0.05) * machines),
        ):
            events.append(
                {
                    "id": f"feed-{uuid.uuid4().hex}",
                    "product": product,
                    "quantity": f"{qty:.6f}",
                    **common,
                }
            )
    return events


def run(*, url: str, token: str, every: float, events: int, seed: int | None) -> int:
    rng = random.Random(seed)
    headers = {"Authorization": f"Bearer {token}"}
    last = time.monotonic()
    previous: list[dict[str, Any]] = []
    with httpx.Client(timeout=30) as client:
        while True:
            time.sleep(every)
            now = time.monotonic()
            batch = _batch(rng, now - last, datetime.now(UTC))[:events]
            last = now
            if previous and rng.random() < 0.2:
                batch += previous[:3]  # a pipeline retry: these come back as duplicates
            previous = batch
            try:
                answer = client.post(url, json={"events": batch}, headers=headers)
                if answer.status_code != 200:
                    print(f"feed: {answer.status_code} {answer.text[:200]}", file=sys.stderr)
            except httpx.HTTPError as e:  # the API restarting: try again next tick
                print(f"feed: {type(e).__name__}", file=sys.stderr)
