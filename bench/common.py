"""Shared by the benchmarks: a scratch database on the configured (or embedded) server, free
ports, child processes that are always cleaned up, progress on stderr and COPY from text."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import psycopg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from devstack.services import resolve_urls  # noqa: E402
from migrations_runner import upgrade  # noqa: E402


def server_urls() -> tuple[str, str]:
    return resolve_urls(
        os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL"), ROOT / ".local"
    )


def with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


def fresh_database(name: str) -> str:
    """Drop, create and migrate `name` on the server; returns its URL."""
    server, _ = server_urls()
    with psycopg.connect(with_database(server, "postgres"), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = with_database(server, name)
    upgrade(url)
    return url


_TAKEN: set[int] = set()


def free_port() -> int:
    """A free local port; within BENCH_PORT_RANGE ("18300-18399") when set, so that benchmarks
    run side by side on a shared machine stay in their own ranges."""
    span = os.environ.get("BENCH_PORT_RANGE")
    candidates = range(int(span.split("-")[0]), int(span.split("-")[1]) + 1) if span else [0]
    for port in candidates:
        if port in _TAKEN:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            found = int(s.getsockname()[1])
            _TAKEN.add(found)
            return found
    raise RuntimeError(f"no free port in BENCH_PORT_RANGE={span}")


def start(
    argv: list[str], env: dict[str, str], *, log: Path | None = None
) -> subprocess.Popen[bytes]:
    out = open(log, "ab") if log else subprocess.DEVNULL  # noqa: SIM115 - lives as long as the child
    return subprocess.Popen(
        argv, cwd=ROOT, env={**os.environ, **env}, stdout=out, stderr=out, start_new_session=True
    )


def stop(proc: subprocess.Popen[bytes], *, kill: bool = False) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGKILL if kill else signal.SIGTERM)
        proc.wait(timeout=15)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        os.killpg(proc.pid, signal.SIGKILL)


def wait_http(url: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not come up")


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def log(message: str) -> None:
    """Progress on stderr: stdout carries the one JSON line."""
    print(message, file=sys.stderr, flush=True)


def copy_text(conn: psycopg.Connection, sql: str, buf: io.StringIO) -> None:
    """`COPY ... FROM STDIN` of tab-separated rows built in `buf`, 1 MB at a time."""
    buf.seek(0)
    with conn.cursor() as cur, cur.copy(sql) as cp:
        while chunk := buf.read(1 << 20):
            cp.write(chunk)
