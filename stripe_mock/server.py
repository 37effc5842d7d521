"""Running the mock: uvicorn on a loopback socket behind the connection-dropping front.

Both run in one event loop, one process, one worker, so all state lives in one place and the
front's transports belong to the loop the endpoints run on (`drop.py`).
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import uvicorn

from .app import MockStripe, create_app

# Held `timeout` faults would otherwise keep Ctrl-C waiting for up to their full length.
_GRACEFUL_SHUTDOWN_SECONDS = 2
_START_TIMEOUT_SECONDS = 10


class MockServer:
    """`app` served on `sock` (a listening socket: the public address)."""

    def __init__(self, app: MockStripe, sock: socket.socket) -> None:
        self.app = app
        self.public = sock
        self._inner = socket.create_server(("127.0.0.1", 0))
        self._config = uvicorn.Config(
            app,
            log_level="warning",
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
            # `scope["client"]` must be the front's upstream socket, which is how an endpoint
            # names the connection to drop; a forwarded-for header must not change it.
            proxy_headers=False,
        )
        self._uvicorn = uvicorn.Server(self._config)

    @property
    def started(self) -> bool:
        return self._uvicorn.started

    def url(self) -> str:
        host, port = self.public.getsockname()[:2]
        return f"http://{host}:{port}"

    def stop(self) -> None:
        """Ask the server to shut down (thread-safe); `serve` returns soon after."""
        self._uvicorn.should_exit = True

    def run(self) -> None:
        """Serve until stopped, on the event loop uvicorn would pick (uvloop when installed).

        The loop matters: measured on this project's 2-core box, a request through the front
        took a median 45 ms on the default asyncio loop in a thread next to the client, and
        about 6 ms on uvloop, which is what `uvicorn.run` used before the front existed.
        """
        with asyncio.Runner(loop_factory=self._config.get_loop_factory()) as runner:
            runner.run(self.serve())

    async def serve(self) -> None:
        upstream = self._inner.getsockname()[:2]
        connections = self.app.connections

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await connections.relay(reader, writer, upstream)

        front = await asyncio.start_server(relay, sock=self.public)
        connections.front_attached = True
        try:
            await self._uvicorn.serve(sockets=[self._inner])
        finally:
            connections.front_attached = False
            front.close()
            connections.abort_all()
            with suppress(TimeoutError):
                async with asyncio.timeout(_GRACEFUL_SHUTDOWN_SECONDS):
                    await front.wait_closed()


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
    rate_limit_per_second: float | None = None,
) -> None:
    """Serve the mock until interrupted (`billing mock-stripe`)."""
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
        rate_limit_per_second=rate_limit_per_second,
    )
    server = MockServer(app, socket.create_server((host, port)))
    # uvicorn catches SIGINT/SIGTERM, shuts down, then re-raises the signal, as `uvicorn.run`.
    with suppress(KeyboardInterrupt):
        server.run()


@contextmanager
def running(app: MockStripe | None = None) -> Iterator[str]:
    """Serve `app` (a fresh mock by default) on a free loopback port in a thread; yields its
    base URL and stops it on exit. For tests and benchmarks."""
    server = MockServer(app or create_app(), socket.create_server(("127.0.0.1", 0)))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + _START_TIMEOUT_SECONDS
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the mock Stripe did not start")
        time.sleep(0.01)
    try:
        yield server.url()
    finally:
        server.stop()
        thread.join(_GRACEFUL_SHUTDOWN_SECONDS + 3)
