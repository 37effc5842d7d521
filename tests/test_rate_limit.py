"""The shared Stripe rate limit: the limiter never lets the fleet past the configured rate in
any one-second window, yet keeps it busy (>= 90% of the rate); the mock enforces Stripe's own
limit over a sliding second, so a 429 there is one we caused."""

from __future__ import annotations

import multiprocessing
import threading
import time
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import redis
import stripe

from stripe_mock import create_app, running
from sync.limiter import RateLimiter
from tests.sync_helpers import Mock, mock, mock_server  # noqa: F401 - fixtures

RATE = 100.0
RUN_SECONDS = 3.0
PROCESSES = 4


def max_in_any_window(times: list[float], width: float = 1.0) -> int:
    """The most timestamps in any closed window [t, t + width] (two pointers over the sorted
    list: every maximal window starts at one of them)."""
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] > width:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def _hammer(redis_url: str, key: str, ready: Any, go: Any, out: Any) -> None:
    # A process of its own, with its own Redis connection: the budget is shared through Redis
    # only. Each grant's time is the limiter's slot on Redis's clock.
    limiter = RateLimiter(redis.Redis.from_url(redis_url), per_second=RATE, key=key)
    slots, seen = [], []
    ready.put(1)
    go.wait(60)
    until = time.time() + RUN_SECONDS
    while time.time() < until:
        grant = limiter.acquire()
        seen.append(time.time())
        slots.append(getattr(grant, "at", seen[-1]))
    out.put((slots, seen))


def test_processes_sharing_the_limiter_never_pass_the_rate_in_any_second(redis_url: str) -> None:
    key = f"test-limiter-{uuid.uuid4().hex}"
    ctx = multiprocessing.get_context("spawn")
    ready, go, out = ctx.Queue(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=_hammer, args=(redis_url, key, ready, go, out)) for _ in range(PROCESSES)
    ]
    for p in procs:
        p.start()
    for _ in procs:
        ready.get(timeout=60)
    go.set()  # all of them hammer from the same moment
    slots: list[float] = []
    seen: list[float] = []
    for _ in procs:
        got_slots, got_seen = out.get(timeout=60)
        slots += got_slots
        seen += got_seen
    for p in procs:
        p.join(10)
    slots.sort()
    # As the callers saw it: late wake-ups can bunch grants up a little, never to twice the
    # rate (the old bucket's full second of burst on top of the second's refill).
    assert max_in_any_window(seen) <= 1.25 * RATE
    # Never more than the rate in any second (the limiter's burst is one token, and its 5%
    # headroom keeps even that under the rate).
    assert max_in_any_window(slots) <= RATE
    # ...and the rate is used: the grants span the run at >= 90% of it.
    span = slots[-1] - slots[0]
    assert span > RUN_SECONDS * 0.8
    assert (len(slots) - 1) / span >= 0.9 * RATE


def test_a_full_bucket_is_no_burst(redis_url: str) -> None:
    """An idle limiter does not save up: after a pause, twice the rate asked at once is spread
    over two seconds, not granted in one."""
    limiter = RateLimiter(
        redis.Redis.from_url(redis_url), per_second=50, key=f"test-limiter-{uuid.uuid4().hex}"
    )
    limiter.acquire()
    time.sleep(1.2)
    slots = [limiter.reserve().at for _ in range(100)]
    assert max_in_any_window(slots) <= 50
    assert slots[-1] - slots[0] >= 1.9


def test_a_caller_that_wakes_late_takes_a_new_slot_instead_of_sending_late(
    redis_url: str,
) -> None:
    """A late wake (a descheduled process) would put its call next to the next caller's on-time
    one; the limiter lets the late slot go. Clock and sleep are injected: nothing is timed."""
    limiter = RateLimiter(
        redis.Redis.from_url(redis_url), per_second=50, key=f"test-limiter-{uuid.uuid4().hex}"
    )
    now = [1000.0]
    oversleep = [0.2, 0.0]  # the first wake is 200 ms late, the second on time

    def sleep(seconds: float) -> None:
        now[0] += seconds + oversleep.pop(0)

    limiter.reserve()  # someone holds the current slot, so ours is in the future
    grant = limiter.acquire(sleep=sleep, clock=lambda: now[0])
    assert oversleep == []  # slept twice: the late slot was given up
    first_free = limiter.reserve().at
    # Two slots went to this caller (the late one and the one it used), then the next is free.
    assert first_free - grant.at == pytest.approx(limiter.interval, abs=1e-3)


def test_a_caller_late_every_time_sends_after_a_few_tries(redis_url: str) -> None:
    limiter = RateLimiter(
        redis.Redis.from_url(redis_url), per_second=50, key=f"test-limiter-{uuid.uuid4().hex}"
    )
    now = [0.0]
    sleeps: list[float] = []

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        now[0] += seconds + 1.0

    limiter.reserve()
    limiter.acquire(sleep=sleep, clock=lambda: now[0])
    assert len(sleeps) == 4  # three slots given up, then it waits for the fourth and sends


# The mock's own limit -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited() -> Iterator[Mock]:
    with running(create_app(rate_limit_per_second=20)) as url:
        yield Mock(url)


def _sdk(url: str) -> stripe.StripeClient:
    return stripe.StripeClient(
        "sk_test_billing_local",
        base_addresses={"api": url},
        max_network_retries=0,
    )


def test_the_mock_answers_429_past_its_rate_in_stripes_shape(limited: Mock) -> None:
    httpx.post(f"{limited.url}/_mock/reset").raise_for_status()
    client = _sdk(limited.url)
    ok, refused = 0, []
    for _ in range(30):  # well within one second on any machine this runs on
        try:
            client.v1.customers.list()
            ok += 1
        except stripe.RateLimitError as e:
            refused.append(e)
    assert ok == 20 and len(refused) == 10
    error = refused[0].error
    assert error is not None and error.code == "rate_limit"
    assert error.type == "invalid_request_error"
    stats = limited.stats()
    assert stats["rate_limited"] == 10
    assert stats["requests"]["GET /v1/customers"] == {"200": 20, "429": 10}
    assert stats["peak_in_one_second"] == 20
    # A sliding second: a second later the mock serves again.
    time.sleep(1.05)
    client.v1.customers.list()


def test_the_mock_limit_is_a_setting(limited: Mock) -> None:
    seen = httpx.post(f"{limited.url}/_mock/faults", json={"rate_limit_per_second": 5}).json()
    assert seen["rate_limit_per_second"] == 5
    httpx.post(f"{limited.url}/_mock/faults", json={"rate_limit_per_second": None})
    assert httpx.get(f"{limited.url}/_mock/faults").json()["rate_limit_per_second"] is None
    httpx.post(f"{limited.url}/_mock/reset").raise_for_status()
    # A reset goes back to the start-up value.
    assert httpx.get(f"{limited.url}/_mock/faults").json()["rate_limit_per_second"] == 20
    bad = httpx.post(f"{limited.url}/_mock/faults", json={"rate_limit_per_second": 0})
    assert bad.status_code == 400


def test_callers_through_the_limiter_get_no_429_from_a_mock_enforcing_the_same_rate(
    redis_url: str,
) -> None:
    rate = 40.0
    key = f"test-limiter-{uuid.uuid4().hex}"
    with running(create_app(rate_limit_per_second=rate)) as url:
        refused: list[int] = []
        done: list[int] = []

        def call_for(seconds: float) -> None:
            limiter = RateLimiter(redis.Redis.from_url(redis_url), per_second=rate, key=key)
            client = _sdk(url)
            until = time.monotonic() + seconds
            while time.monotonic() < until:
                limiter.acquire()
                try:
                    client.v1.customers.list()
                    done.append(1)
                except stripe.RateLimitError:
                    refused.append(1)

        started = time.monotonic()
        threads = [threading.Thread(target=call_for, args=(2.5,)) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        elapsed = time.monotonic() - started
        assert refused == []
        assert len(done) / elapsed >= 0.8 * rate  # busy, not merely cautious


# The worker's CPU per call ------------------------------------------------------------------


def test_the_stripe_client_reads_proxy_settings_once_not_per_request(
    mock: Mock,  # noqa: F811 - the fixture imported above
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """requests looks the proxy variables up in the whole environment on every request
    (`merge_environment_settings`): 13% of a sync worker's CPU in a profile of the close's sync.
    The client decides once, for the one host it talks to, and still honours them."""
    import urllib.request

    from sync.stripe_client import make_client

    lookups = 0
    real = urllib.request.getproxies

    def counting() -> dict[str, str]:
        nonlocal lookups
        lookups += 1
        return real()

    monkeypatch.setattr(urllib.request, "getproxies", counting)
    monkeypatch.setattr("requests.utils.getproxies", counting)
    client = make_client("sk_test_billing_local", mock.url, timeout=5)
    before = lookups
    for _ in range(5):
        client.v1.customers.list()
    assert lookups - before == 0

    # A proxy in the environment still applies to Stripe's host (here: one that refuses)...
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    proxied = make_client("sk_test_billing_local", mock.url, timeout=5)
    with pytest.raises(stripe.APIConnectionError):
        proxied.v1.customers.list()
    # ...unless NO_PROXY exempts it.
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    make_client("sk_test_billing_local", mock.url, timeout=5).v1.customers.list()
