"""Running the mock as its own process."""

from __future__ import annotations

from typing import Any

import uvicorn

from .app import create_app

# Held `timeout` faults would otherwise keep Ctrl-C waiting for up to their full length.
_GRACEFUL_SHUTDOWN_SECONDS = 2


def serve(
    host: str = "127.0.0.1",
    port: int = 12111,
    *,
    rules: list[dict[str, Any]] | None = None,
    idempotency_ttl_seconds: float = 86400,
    seed: int | None = None,
    search_lag_seconds: float = 0.0,
    state_path: str | None = None,
    webhook_url: str | None = None,
    webhook_secrets: list[str] | None = None,
    webhook_duplicate_probability: float = 0.0,
    webhook_max_delay_seconds: float = 0.0,
) -> None:
    """Serve the mock until interrupted: one worker, so all state lives in one process."""
    app = create_app(
        rules=rules,
        idempotency_ttl_seconds=idempotency_ttl_seconds,
        seed=seed,
        search_lag_seconds=search_lag_seconds,
        state_path=state_path,
        webhook_url=webhook_url,
        webhook_secrets=webhook_secrets,
        webhook_duplicate_probability=webhook_duplicate_probability,
        webhook_max_delay_seconds=webhook_max_delay_seconds,
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        workers=1,
        log_level="warning",
        timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
    )
