"""The exceptions the sync raises itself (Stripe's own come from the SDK). `sync.classify`
turns each into a verdict: retry, fail or pause."""

from __future__ import annotations


class Mismatch(Exception):
    """Stripe holds something other than our invoice, and it cannot be repaired there."""

    code = "MISMATCH"


class BreakerOpen(Exception):
    """Syncing is paused after an authentication error; no call was made."""


class RateLimiterTimeout(Exception):
    """No token from the shared rate limiter in time: the fleet is over its Stripe budget."""
