"""API key check: any test-mode secret or restricted key is accepted."""

from __future__ import annotations

from . import errors

_TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")


def api_key(authorization: str | None) -> str:
    """The key from a Bearer header, as the SDK sends it."""
    if not authorization:
        raise errors.authentication(
            "You did not provide an API key. Send it as 'Authorization: Bearer sk_test_...'."
        )
    scheme, _, credential = authorization.strip().partition(" ")
    key = credential.strip() if scheme.lower() == "bearer" else ""
    if not key.startswith(_TEST_KEY_PREFIXES) or len(key) <= len("sk_test_"):
        raise errors.authentication(
            f"Invalid API Key provided: {_masked(key)}. The mock accepts test-mode keys only."
        )
    return key


def _masked(key: str) -> str:
    return key[:8] + "*" * max(0, len(key) - 12) + key[-4:] if len(key) > 12 else "****"
