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

All in integer cents, integer arithmetic rounded half-even once per line (no floats), so the
groups (product, app, region) add up to the projection. O(lines): ~10 us a line.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from math import isqrt

STOPPED_AFTER = timedelta(hours=24)
DAY = 86_400
# Ratios as (numerator, denominator), so every amount is integer arithmetic (fast, no floats).
# Day-to-day variation of traffic (standard deviation over mean) the range allows for, and how
# many of those deviations it spans. Calibrated by the backtest (docs/forecast.md).
BURSTY_DAILY_CV = (1, 1)
BURSTY_SPREAD = (3, 2)
# A running line's low: its rate may drift down (autoscaling) by this share.
CONTINUOUS_DRIFT = (1, 10)
# New usage the draft does not show yet (an app deployed later in the month): the high allows
# this share of the projected future on top. Calibrated by the backtest.
GROWTH = (1, 5)
PPM = 1_000_000

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


def _div(n: int, d: int) -> int:
    """n / d rounded half to even (d > 0), in integers."""
    q, r = divmod(n, d)
    twice = 2 * r
    return q + (twice > d or (twice == d and q % 2 == 1))


def _seconds(d: timedelta) -> int:
    return d.days * DAY + d.seconds


def bursty_band_ppm(elapsed: int, remaining: int) -> int:
    """The bursty range's half-width, in millionths of the projected future: BURSTY_SPREAD x
    BURSTY_DAILY_CV x sqrt(1/elapsed days + 1/remaining days) (each at least one day): the
    uncertainty of the mean day so far plus the noise of the days left."""
    e, r = max(elapsed, DAY), max(remaining, DAY)
    (sn, sd), (cn, cd) = BURSTY_SPREAD, BURSTY_DAILY_CV
    # (band x PPM)^2 = (sn cn / sd cd)^2 x DAY (e + r) / (e r) x PPM^2
    return isqrt((sn * cn) ** 2 * DAY * (e + r) * PPM * PPM // ((sd * cd) ** 2 * e * r))


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
    band = bursty_band_ppm(elapsed, remaining)
    dn, dd = CONTINUOUS_DRIFT
    gn, gd = GROWTH
    out: list[LineForecast] = []
    for x in lines:
        a = x.amount_cents
        if x.kind is Kind.EXACT or x.first_usage_at is None or x.last_usage_at is None:
            out.append(LineForecast(a, a, a))
            continue
        # future = a x remaining / elapsed: the month's run rate, the most the bound allows.
        spent = a * remaining
        future = _div(spent, elapsed)
        growth = _div(spent * gn, elapsed * gd)
        if x.kind is Kind.CONTINUOUS:
            if as_of - x.last_usage_at > STOPPED_AFTER:
                low = 0
            else:
                low = _div(spent * (dd - dn), elapsed * dd)
            # Its own rate since its first usage, over at least a day (a few minutes of usage
            # say little about a rate).
            own = max(_seconds(as_of - x.first_usage_at), DAY)
            high = max(future, _div(spent, own)) + growth
        else:
            low = max(0, _div(spent * (PPM - band), elapsed * PPM))
            high = _div(spent * (PPM + band), elapsed * PPM) + growth
        out.append(LineForecast(a + future, a + low, a + high))
    return Forecast(
        sum(f.total_cents for f in out),
        sum(f.low_cents for f in out),
        sum(f.high_cents for f in out),
        METHOD,
        tuple(out),
    )
