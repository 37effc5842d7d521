"""A real uvicorn server in a thread, on a free loopback port, for tests that need sockets:
concurrency against the event loop, the graphql-http audit, dropped connections."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import uvicorn
from starlette.types import ASGIApp

from settings import PROJECT_ROOT


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serve(app: ASGIApp) -> Iterator[str]:
    """Serve `app` until the block ends; yields its base URL once it accepts connections."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    started = threading.Event()
    # uvicorn sets `started` once the socket listens; poll it with a bounded wait.
    for _ in range(500):
        if server.started:
            started.set()
            break
        threading.Event().wait(0.01)
    assert started.is_set(), "uvicorn did not start within 5 s"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


@contextmanager
def serve_process(database_url: str, redis_url: str) -> Iterator[str]:
    """The API in its own uvicorn process (tests/serve_app.py); yields its base URL."""
    with serve_process_with_pid(database_url, redis_url) as (base, _):
        yield base


@contextmanager
def serve_process_with_pid(database_url: str, redis_url: str) -> Iterator[tuple[str, int]]:
    """As `serve_process`, also yielding the server's process id (for its memory)."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.serve_app", str(port), database_url, redis_url],
        cwd=PROJECT_ROOT,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120  # imports take 15 s on a loaded 2-core box
        while True:
            assert proc.poll() is None, "the server exited"
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the server did not start within 120 s"
            threading.Event().wait(0.05)
        yield base, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)
