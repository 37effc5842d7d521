"""A mock of the Stripe API subset the billing sync uses, with fault injection.

See docs/sync.md, "What Stripe really does, and the mock". `billing mock-stripe --port N` runs `serve`; tests use
`running()`. Dev tooling: imported by nothing in the product, and not in its wheel.
"""

from __future__ import annotations

from .app import MockStripe, create_app
from .errors import LINE_LIMIT_CODE, MAX_INVOICE_LINES
from .handlers import ENDPOINTS
from .server import MockServer, running, serve
from .settings import SettingsError, settings_from_json

__all__ = [
    "ENDPOINTS",
    "LINE_LIMIT_CODE",
    "MAX_INVOICE_LINES",
    "MockServer",
    "MockStripe",
    "SettingsError",
    "create_app",
    "running",
    "serve",
    "settings_from_json",
]
