"""Forecast backtest (`make bench-forecast`): replays closed months of generated usage through
models.usage.forecast.forecast, the function `upcomingInvoice` answers with, and measures it.

ORGS organizations x MONTHS calendar months (seeded, so every run replays the same months).
Each organization has 1-5 apps; each app has machines (hourly metered CPU and memory, a few
percent of day-to-day autoscaling), often a volume (hourly storage) and egress (bursty: a
lognormal day around the app's mean, quieter weekends, rare spikes of 5-20 days' traffic).
Per month, on top of the steady apps: with NEW_APP_P a new app starts on a random day and runs
to the end; with STOP_P an app stops on a random day; ~30 % of organizations have a recurring
plan line (exact in the preview). Snapshots are taken at midnight UTC after day 3, 7, 14 and
21 with the lines as the draft would hold them then (amount so far, first and last usage).

Prints one JSON line: per day, the median and p90 absolute percentage error of the projection
against the month's final total, and the share of months whose final total fell in [low, high];
plus the targets and whether they are met. No database: a few seconds.
"""

from __future__ import annotations

import json
import math
import os
import random
import statistics
import sys
import time
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from models.usage.forecast import Kind, LineUsage, forecast  # noqa: E402

ORGS = int(os.environ.get("FORECAST_ORGS", "200"))
MONTHS = [date(2025, m, 1) for m in range(7, 13)]  # six closed months
DAYS = (3, 7, 14, 21)
SEED = 22
NEW_APP_P = 0.25
STOP_P = 0.15
PLAN_P = 0.3
TARGETS = {"median_day7": 0.10, "median_day14": 0.05, "coverage": 0.80}
HOUR = timedelta(hours=1)


@dataclass
class Line:
    """One draft line over a month: its kind and hourly (continuous) or daily (bursty) usage,
    in cents (fractional until the draft rounds the line)."""

    kind: Kind
    # Continuous: a rate per hour between start and stop (hours from the month's start) with a
    # factor per day; bursty: an amount per day and the hour of the day's last event.
    rate: float = 0.0
    start_h: int = 0
    stop_h: int = 0
    day_factor: tuple[float, ...] = ()
    daily: tuple[float, ...] = ()
    last_hour: tuple[int, ...] = ()

    def snapshot(self, month: datetime, hours: int) -> LineUsage | None:
        """The line as the draft holds it after `hours` hours of the month (None: no usage)."""
        if self.kind is Kind.CONTINUOUS:
            end = min(self.stop_h, hours)
            if end <= self.start_h:
                return None
            amount = 0.0
            for h in range(self.start_h, end, 24):  # by day: the day factor is per day
                day_end = min(end, (h // 24 + 1) * 24)
                amount += self.rate * self.day_factor[h // 24] * (day_end - h)
            return LineUsage(
                Kind.CONTINUOUS,
                round(amount),
                month + self.start_h * HOUR,
                month + (end - 1) * HOUR,  # the last hourly event
            )
        days = hours // 24
        used = [d for d in range(days) if self.daily[d] > 0]
        if not used:
            return None
        return LineUsage(
            Kind.BURSTY,
            round(sum(self.daily[:days])),
            month + (used[0] * 24) * HOUR,
            month + (used[-1] * 24 + self.last_hour[used[-1]]) * HOUR,
        )


def month_lines(rng: random.Random, org: dict[str, object], month: date) -> tuple[list[Line], int]:
    """An organization's usage lines of one month, and its recurring cents."""
    n_days = ((month.replace(day=28) + timedelta(days=4)).replace(day=1) - month).days
    hours = n_days * 24
    apps: list[dict[str, float]] = list(org["apps"])  # type: ignore[call-overload]
    plans: list[tuple[dict[str, float], int, int]] = [(a, 0, hours) for a in apps]
    if rng.random() < NEW_APP_P:
        start = rng.randrange(1, n_days - 2) * 24 + rng.randrange(24)
        plans.append((new_app(rng), start, hours))
    if rng.random() < STOP_P and plans:
        i = rng.randrange(len(plans))
        a, s, _ = plans[i]
        plans[i] = (a, s, max(s + 1, rng.randrange(2, n_days - 3) * 24 + rng.randrange(24)))
    weekday0 = month.weekday()
    lines: list[Line] = []
    for app, start, stop in plans:
        for share in (0.3, 0.7):  # CPU and memory lines of the app's machines
            lines.append(
                Line(
                    Kind.CONTINUOUS,
                    rate=app["machine_rate"] * share,
                    start_h=start,
                    stop_h=stop,
                    day_factor=tuple(1 + rng.gauss(0, 0.03) for _ in range(n_days)),
                )
            )
        if app["volume_rate"] > 0:
            lines.append(
                Line(
                    Kind.CONTINUOUS,
                    rate=app["volume_rate"],
                    start_h=start,
                    stop_h=stop,
                    day_factor=(1.0,) * n_days,
                )
            )
        daily = []
        for d in range(n_days):
            if not start <= d * 24 + 12 < stop:
                daily.append(0.0)
                continue
            weekend = (weekday0 + d) % 7 >= 5
            v = app["egress_day"] * (0.6 if weekend else 1.1) * rng.lognormvariate(-0.125, 0.5)
            if rng.random() < 0.02:
                v += app["egress_day"] * rng.uniform(5, 20)
            daily.append(v)
        lines.append(
            Line(
                Kind.BURSTY,
                daily=tuple(daily),
                last_hour=tuple(rng.randrange(18, 24) for _ in range(n_days)),
            )
        )
    return lines, int(org["plan_cents"])  # type: ignore[call-overload]


def new_app(rng: random.Random) -> dict[str, float]:
    machines = rng.choice((1, 1, 2, 3, 5, 10))
    return {
        # cents per hour: $2-$60 a month per machine
        "machine_rate": machines * rng.lognormvariate(math.log(1.5), 0.8),
        "volume_rate": rng.choice((0.0, 0.0, 1.0)) * rng.lognormvariate(math.log(0.5), 0.7),
        # cents per day of traffic: from almost none to a third of the bill
        "egress_day": machines * rng.lognormvariate(math.log(8), 1.2),
    }


def percentile(xs: list[float], p: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(p * len(s)))]


def run() -> dict[str, object]:
    rng = random.Random(SEED)
    orgs = [
        {
            "apps": [new_app(rng) for _ in range(rng.choice((1, 1, 2, 3, 5)))],
            "plan_cents": rng.choice((0, 2_900, 49_900)) if rng.random() < PLAN_P else 0,
        }
        for _ in range(ORGS)
    ]
    errors: dict[int, list[float]] = {d: [] for d in DAYS}
    inside: dict[int, int] = dict.fromkeys(DAYS, 0)
    widths: dict[int, list[float]] = {d: [] for d in DAYS}
    months = 0
    started = time.perf_counter()
    for org in orgs:
        for m in MONTHS:
            lines, plan = month_lines(rng, org, m)
            start = datetime(m.year, m.month, 1, tzinfo=UTC)
            end = datetime(m.year + m.month // 12, m.month % 12 + 1, 1, tzinfo=UTC)
            hours = int((end - start).total_seconds()) // 3600
            plan_line = [LineUsage(Kind.EXACT, plan)] if plan else []
            final = sum(s.amount_cents for x in lines if (s := x.snapshot(start, hours))) + plan
            if final <= 0:
                continue
            months += 1
            for d in DAYS:
                snap = [s for x in lines if (s := x.snapshot(start, d * 24))] + plan_line
                f = forecast(
                    snap, as_of=start + timedelta(days=d), period_start=start, period_end=end
                )
                errors[d].append(abs(f.total_cents - final) / final)
                inside[d] += f.low_cents <= final <= f.high_cents
                widths[d].append((f.high_cents - f.low_cents) / max(f.total_cents, 1))
    per_day = {
        f"day{d}": {
            "median_ape": round(statistics.median(errors[d]), 4),
            "p90_ape": round(percentile(errors[d], 0.9), 4),
            "coverage": round(inside[d] / months, 4),
            # how wide the range is, as a share of the projection (median)
            "median_range_width": round(statistics.median(widths[d]), 4),
        }
        for d in DAYS
    }
    coverage = sum(inside.values()) / (months * len(DAYS))
    met = {
        "median_day7": per_day["day7"]["median_ape"] <= TARGETS["median_day7"],
        "median_day14": per_day["day14"]["median_ape"] <= TARGETS["median_day14"],
        "coverage": coverage >= TARGETS["coverage"],
    }
    return {
        "bench": "forecast",
        "organizations": ORGS,
        "months": months,
        "seed": SEED,
        **per_day,
        "coverage_all_days": round(coverage, 4),
        "targets": TARGETS,
        "targets_met": met,
        "seconds": round(time.perf_counter() - started, 2),
        "loadavg_1m": round(os.getloadavg()[0], 2),
    }


if __name__ == "__main__":
    print(json.dumps(run()))
