"""The month-end projection of a draft, with a range: one pure function over typed line data.

`forecast(lines, as_of=, period_start=, period_end=)` is what `upcomingInvoice` answers
(models/usage/upcoming.py feeds it the draft's lines) and what `make bench-forecast` replays
over generated months without a database, so the error the backtest measures is the API's.

Time shares: e = as_of - period_start (elapsed), r = period_end - as_of (remaining), k = r / e.

The bound. No single event may move the projection by more than its own amount (it is spent)
plus that amount times k. For an estimator that adds up what each event implies for the rest
of the month, this says every cent already used may be extrapolated with a weight of at most k,
and k is exactly the weight of the whole-month run rate (amount so far / e, times r). So a line
is never projected from a rate over less than the elapsed month: a machine started an hour ago
counts at its month-average rate (the old one-hour floor projected one $0.25 egress event to
$193), and the range's `high` says what it costs if it keeps running at its own rate.

Per kind of line:
- EXACT (recurring and one-off lines, usage of an earlier period): complete, counted as is.
- CONTINUOUS (billed per unit of time: vCPU-second, GB-second, GB-month): the month's run rate,
  future = k x amount. A line idle for STOPPED_AFTER is probably stopped: the range's `low`
  projects nothing more for it; the projection keeps k x amount because a stop is not certain
  and a line that resumes must not jump (the bound). Its `high` assumes the line keeps the rate
  it has had since its first usage (a machine started mid-month, at full rate).
- BURSTY (billed per unit of traffic: egress GB): the organization's daily pattern this month,
  i.e. its mean day so far times the days left (the same k x amount, whatever the order of the
  days). Its range widens with the day-to-day variation of traffic: BURSTY_DAILY_CV, with the
  uncertainty of a mean of the elapsed days plus the noise of the remaining ones.

All in integer cents, computed with exact fractions and rounded half-even once per line, so the
groups (product, app, region) add up to the projection. O(lines).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from fractions import Fraction
from math import isqrt

STOPPED_AFTER = timedelta(hours=24)
DAY = 86_400
# Day-to-day variation of traffic (standard deviation over mean) the range allows for, and how
# many of those deviations it spans. Calibrated by the backtest (docs/forecast.md).
BURSTY_DAILY_CV = Fraction(1)
BURSTY_SPREAD = Fraction(3, 2)
# A running line's low: its rate may drift down (autoscaling) by this share.
CONTINUOUS_DRIFT = Fraction(1, 10)
# New usage the draft does not show yet (an app deployed later in the month): the high allows
# this share of the projected future on top. Calibrated by the backtest.
GROWTH = Fraction(1, 5)

METHOD = "run-rate-by-kind/v1"


class Kind(StrEnum):
    EXACT = "exact"
    CONTINUOUS = "continuous"
    BURSTY = "bursty"


_TIME_UNITS = frozenset({"second", "minute", "hour", "day", "month"})


def kind_of(unit: str) -> Kind:
    """A usage line's kind from its unit: per unit of time ("second", "vCPU-second",
    "GB-month") is continuous, anything else (GB of traffic, requests) bursty."""
    return Kind.CONTINUOUS if unit.lower().rsplit("-", 1)[-1] in _TIME_UNITS else Kind.BURSTY


@dataclass(frozen=True)
class LineUsage:
    kind: Kind
    amount_cents: int
    first_usage_at: datetime | None = None
    last_usage_at: datetime | None = None


@dataclass(frozen=True)
class LineForecast:
    total_cents: int
    low_cents: int
    high_cents: int


@dataclass(frozen=True)
class Forecast:
    total_cents: int
    low_cents: int
    high_cents: int
    method: str
    lines: tuple[LineForecast, ...]


def _round(x: Fraction) -> int:
    return round(x)  # Fraction rounds half to even


def _seconds(d: timedelta) -> int:
    return d.days * DAY + d.seconds


def _sqrt(x: Fraction) -> Fraction:
    """sqrt to 1e-6, exact enough for a range and free of floats."""
    scale = 10**12
    return Fraction(isqrt(int(x * scale * scale)), scale)


def forecast(
    lines: Sequence[LineUsage], *, as_of: datetime, period_start: datetime, period_end: datetime
) -> Forecast:
    """The period's projected total with a low/high range, per line and summed (module
    docstring). Lines of an ended period, or read before it began, are complete."""
    elapsed = _seconds(as_of - period_start)
    remaining = _seconds(period_end - as_of)
    if elapsed <= 0 or remaining <= 0:
        done = tuple(LineForecast(x.amount_cents, x.amount_cents, x.amount_cents) for x in lines)
        total = sum(x.amount_cents for x in lines)
        return Forecast(total, total, total, METHOD, done)
    k = Fraction(remaining, elapsed)
    # The bursty band: relative standard deviation of the future traffic, from the mean of the
    # elapsed days (at least one) and the sum of the remaining ones.
    e_days = Fraction(max(elapsed, DAY), DAY)
    r_days = Fraction(max(remaining, DAY), DAY)
    bursty_band = BURSTY_SPREAD * BURSTY_DAILY_CV * _sqrt(1 / e_days + 1 / r_days)
    out: list[LineForecast] = []
    for x in lines:
        a = x.amount_cents
        if x.kind is Kind.EXACT or x.first_usage_at is None or x.last_usage_at is None:
            out.append(LineForecast(a, a, a))
            continue
        future = k * a
        if x.kind is Kind.CONTINUOUS:
            if as_of - x.last_usage_at > STOPPED_AFTER:
                low = Fraction(0)
            else:
                low = future * (1 - CONTINUOUS_DRIFT)
            # Its own rate since its first usage, over at least a day (a few minutes of usage
            # say little about a rate).
            own = _seconds(as_of - x.first_usage_at)
            high = max(future, Fraction(a * remaining, max(own, DAY)))
        else:
            low = max(Fraction(0), future * (1 - bursty_band))
            high = future * (1 + bursty_band)
        high += GROWTH * future
        out.append(LineForecast(a + _round(future), a + _round(low), a + _round(high)))
    return Forecast(
        sum(f.total_cents for f in out),
        sum(f.low_cents for f in out),
        sum(f.high_cents for f in out),
        METHOD,
        tuple(out),
    )
