"""The JSON settings object shared by `POST /_mock/faults` and start-up configuration.

`{"rules": [...], "idempotency_ttl_seconds": 5, "seed": 42, "search_lag_seconds": 0,
  "rate_limit_per_second": 100,
  "webhook_url": "http://127.0.0.1:8000/webhooks/stripe", "webhook_secrets": ["whsec_..."],
  "webhook_duplicate_probability": 0.1, "webhook_max_delay_seconds": 5}`;
every key is optional, and an absent key leaves that setting as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .faults import Rule, RuleError, parse_rules
from .handlers import ENDPOINTS

_WEBHOOK_KEYS = frozenset(
    {
        "webhook_url",
        "webhook_secrets",
        "webhook_duplicate_probability",
        "webhook_max_delay_seconds",
    }
)
_KEYS = (
    frozenset(
        {
            "rules",
            "idempotency_ttl_seconds",
            "seed",
            "search_lag_seconds",
            "unsupported_currencies",
            "rate_limit_per_second",
        }
    )
    | _WEBHOOK_KEYS
)


class SettingsError(ValueError):
    pass


@dataclass(frozen=True)
class Settings:
    rules: list[Rule] | None
    idempotency_ttl_seconds: float | None
    search_lag_seconds: float | None
    reseed: bool
    seed: int | None
    # Only the webhook_* keys that were given.
    webhooks: dict[str, Any]
    # Currencies the account cannot charge in (Stripe refuses them with 400); None: unchanged.
    unsupported_currencies: list[str] | None = None
    # Stripe's own limit (requests in any sliding second): given (a number, or None for no
    # limit) only when `rate_limit_given`.
    rate_limit_per_second: float | None = None
    rate_limit_given: bool = False


def parse_settings(payload: object, endpoints: Iterable[str]) -> Settings:
    if not isinstance(payload, dict):
        raise SettingsError("settings must be a JSON object")
    if unknown := set(payload) - _KEYS:
        raise SettingsError(f"unknown keys {sorted(unknown)}; allowed: {sorted(_KEYS)}")
    try:
        rules = parse_rules(payload["rules"], endpoints) if "rules" in payload else None
    except RuleError as e:
        raise SettingsError(str(e)) from None
    seed = payload.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool)):
        raise SettingsError("seed must be an integer or null")
    webhooks = {k: payload[k] for k in _WEBHOOK_KEYS if k in payload}
    url = webhooks.get("webhook_url")
    if url is not None and not isinstance(url, str):
        raise SettingsError("webhook_url must be a URL string or null")
    secrets = webhooks.get("webhook_secrets", [])
    if not isinstance(secrets, list) or not all(isinstance(x, str) and x for x in secrets):
        raise SettingsError("webhook_secrets must be a list of non-empty strings")
    probability = webhooks.get("webhook_duplicate_probability", 0)
    if not isinstance(probability, int | float) or not 0 <= probability <= 1:
        raise SettingsError("webhook_duplicate_probability must be between 0 and 1")
    _seconds(payload, "webhook_max_delay_seconds")
    currencies = payload.get("unsupported_currencies")
    if currencies is not None and (
        not isinstance(currencies, list) or not all(isinstance(c, str) for c in currencies)
    ):
        raise SettingsError("unsupported_currencies must be a list of currency codes")
    rate = payload.get("rate_limit_per_second")
    if rate is not None and (not _is_number(rate) or rate <= 0):
        raise SettingsError("rate_limit_per_second must be a positive number or null")
    return Settings(
        rate_limit_per_second=None if rate is None else float(rate),
        rate_limit_given="rate_limit_per_second" in payload,
        unsupported_currencies=[c.lower() for c in currencies] if currencies is not None else None,
        webhooks=webhooks,
        rules=rules,
        idempotency_ttl_seconds=_seconds(payload, "idempotency_ttl_seconds"),
        search_lag_seconds=_seconds(payload, "search_lag_seconds"),
        reseed="seed" in payload,
        seed=seed,
    )


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _seconds(payload: dict[str, Any], key: str) -> float | None:
    value = payload.get(key)
    if value is None:
        return None
    if not isinstance(value, int | float) or isinstance(value, bool) or value < 0:
        raise SettingsError(f"{key} must be a non-negative number of seconds")
    return float(value)


def settings_from_json(text: str) -> dict[str, Any]:
    """Keyword arguments for `create_app` / `serve` from a settings JSON document.

    Raises SettingsError (a ValueError) on anything `POST /_mock/faults` would refuse.
    """
    try:
        payload = json.loads(text)
    except ValueError as e:
        raise SettingsError(f"settings are not valid JSON: {e}") from None
    parse_settings(payload, ENDPOINTS)
    return dict(payload)
