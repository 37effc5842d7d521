"""`billing run`: the whole stack in one terminal, for a developer's machine.

Checks that its ports are free, migrates, seeds demo data when the database is empty, starts
the mock Stripe, the API, a Celery worker and Celery beat as child processes, then (once the API
answers as itself) the metering feed, prints how to use them, and on Ctrl-C or `billing stop`
(its pid file) stops the children and then the embedded servers it started. Production runs each
process on its own (`billing serve`, `billing worker`, `billing beat`) under a real supervisor.

Truthful by construction (issue 24): a taken port stops it before anything starts, naming the
variable to change; readiness is our own /healthz answer, not any HTTP answer; the mock posts
its webhooks to this stack's API, never to a default address another stack may hold.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx

from settings import PROJECT_ROOT, Settings

# What /healthz answers (gql/app.py): how the supervisor tells our API from another program.
HEALTHZ_SERVICE = "billing-api"
PID_FILE = "run.pid"  # under the local dir: `billing stop` finds the running stack by it


@dataclass
class Child:
    name: str
    argv: list[str]
    # Started only once the API answers (the feed posts to it; so may other clients of it).
    after_api: bool = False
    process: subprocess.Popen[bytes] | None = None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


class PortTaken(Exception):
    """A port the stack needs is in use; the message names it and the variable to change."""


def port_is_free(host: str, port: int) -> bool:
    """Whether a server could listen on (host, port) now. SO_REUSEADDR as uvicorn sets it, so
    a socket of our last run still in TIME_WAIT does not count as taken; a listener does."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def check_ports(cfg: Settings, *, host: str) -> None:
    """PortTaken for the first port of the stack that something already listens on."""
    for name, port, variable in (
        ("the API", cfg.api_port, "BILLING_API_PORT"),
        ("the mock Stripe", cfg.mock_port, "BILLING_MOCK_PORT"),
        ("the demo's webhook sink", cfg.webhook_sink_port, "WEBHOOK_SINK_PORT"),
    ):
        if not port_is_free(host, port):
            raise PortTaken(
                f"port {port} ({name}) is already in use by another program; stop it, or "
                f"choose another port: {variable}={port + 1} make run"
            )


def api_is_up(base: str, *, seconds: float, stopping: Callable[[], bool] = lambda: False) -> bool:
    """Until our API answers /healthz as itself (200 and `"service": "billing-api"`): another
    program on the port answering 404, or anything else, is not our API."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stopping():
        try:
            answer = httpx.get(f"{base}/healthz", timeout=1.0)
            if answer.status_code == 200 and answer.json().get("service") == HEALTHZ_SERVICE:
                return True
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        time.sleep(0.2)
    return False


def _stop(children: list[Child]) -> None:
    for child in reversed(children):
        if child.process and child.process.poll() is None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 15
    for child in children:
        if child.process is None:
            continue
        try:
            child.process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            child.process.kill()


TOKENS_FILE = "demo-tokens.json"  # under the local dir (.local/), gitignored


def tokens_file(cfg: Settings) -> Path:
    return cfg.local_dir / TOKENS_FILE


def _dev_env() -> dict[str, str]:
    # The metering feed posts every few seconds: its answers are not news, errors still are.
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "API_ACCESS_LOG": "errors"}
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        # Containers and CI boxes run `make run` as root; Celery then warns on every start. We
        # send JSON, never pickle, so Celery does not refuse to run, and this is a developer's
        # stack, so the warning is filtered here only (never C_FORCE_ROOT, and never in
        # production, where the worker must run as its own user).
        superuser = "ignore:You're running the worker with superuser privileges"
        env["PYTHONWARNINGS"] = ",".join(filter(None, [env.get("PYTHONWARNINGS"), superuser]))
    return env


def wait_worker(cfg: Settings, seconds: float) -> bool:
    """Until a Celery worker answers a ping over the broker (so its start-up lines are out
    before the banner). The ping goes through the app configured from `cfg`: unconfigured, it
    went to Celery's default broker, where no worker ever answers."""
    from sync import celery_app
    from sync.config import SyncConfig

    app = celery_app.configure(SyncConfig.from_settings(cfg))
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if app.control.ping(timeout=1.0):
            return True
    return False


def banner(
    out: TextIO,
    *,
    host: str,
    port: int,
    tokens: dict[str, str],
    mock_port: int = 12111,
    running: bool = True,
) -> None:
    """The links, tokens and example queries: printed last by `billing run`, and again by
    `billing tokens`."""
    listing = "\n".join(f"   {name:<15}{token}" for name, token in tokens.items())
    base = f"http://{host}:{port}"
    member = next((t for k, t in tokens.items() if k != "admin"), "<member token>")
    admin = tokens.get("admin", "<admin token>")
    out.write(
        f"""
================================================================================
 {"billing is running" if running else "billing demo tokens and links (`billing run` serves them)"}
   GraphiQL     {base}/graphql   (add header  Authorization: Bearer <token>)
   Dashboard    {base}/dashboard#token={member}
   Operators    {base}/dashboard#token={admin}
   Metrics      {base}/metrics     Health {base}/healthz  {base}/readyz
   Mock Stripe  http://127.0.0.1:{mock_port}/_mock/invoices
   Webhooks     deliveries print as "webhook sink: ..." lines; `billing webhooks-out list`

 Try it:
   curl -s {base}/graphql -H 'Authorization: Bearer {member}' \\
     -H 'Content-Type: application/json' \\
     -d '{{"query":"{{ invoices(first: 5) {{ nodes {{ number status total {{ formatted }} syncState {{ status }} }} }} }}"}}'

   In GraphiQL:
     {{ viewer {{ organizations {{ slug name }} }}
       invoices(first: 10) {{ nodes {{ number status periodStart total {{ formatted }}
         lineItems(first: 5) {{ nodes {{ description app region quantity unit amount {{ formatted }} }} }}
         syncState {{ status attempts lastError {{ message }} }} }} }} }}

 Tokens (header  Authorization: Bearer <token>; admin sees the whole platform):
{listing}

 `billing tokens` prints this again.{" Ctrl-C stops everything." if running else ""}
================================================================================
"""
    )
    out.flush()


SINK_SECRET_FILE = "webhook-sink-secret"


def children(cfg: Settings, *, host: str, port: int, tokens: dict[str, str]) -> list[Child]:
    """The processes of the stack, in start order; `after_api` ones wait for the API."""
    api = f"http://{host}:{port}"
    out = [
        # Webhooks go to this stack's API, on the port it was given (never a default address).
        Child(
            "mock-stripe",
            _cli(
                "mock-stripe",
                "--port",
                str(cfg.mock_port),
                "--webhook-url",
                f"{api}/webhooks/stripe",
            ),
        ),
        Child("api", _cli("serve", "--host", host, "--port", str(port))),
        Child("worker", _cli("worker", "--concurrency", "2")),
        Child("beat", _cli("beat")),
        # Receives the demo's outbound webhooks (registered by run_stack) and prints each one.
        Child(
            "webhook-sink",
            _cli(
                "webhook-sink",
                "--port",
                str(cfg.webhook_sink_port),
                "--secret-file",
                str(cfg.local_dir / SINK_SECRET_FILE),
            ),
        ),
    ]
    if "admin" in tokens:
        # A simulated metering feed, so that the month so far moves while you watch.
        feed = _cli("feed", "--url", f"{api}/v1/usage", "--token", tokens["admin"])
        out.append(Child("feed", feed, after_api=True))
    return out


def pid_file(local_dir: Path) -> Path:
    return local_dir / PID_FILE


def _running_pid(local_dir: Path) -> int | None:
    """The pid of the `billing run` whose pid file is here, if that process still runs."""
    try:
        pid = int(pid_file(local_dir).read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    with contextlib.suppress(OSError):
        # A pid reused by an unrelated process after a crash is not ours to stop.
        if b"cli" not in Path(f"/proc/{pid}/cmdline").read_bytes():
            return None
    return pid


def stop_stack(local_dir: Path, *, seconds: float = 30.0) -> str:
    """Stop the `billing run` recorded in the pid file (SIGTERM: it stops its children, then
    the embedded servers it started) and wait for it. Returns what happened, for people."""
    pid = _running_pid(local_dir)
    if pid is None:
        return "no `billing run` is running here"
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return f"stopped `billing run` (pid {pid}) and its processes"
        time.sleep(0.2)
    return f"`billing run` (pid {pid}) is still stopping after {seconds:.0f} s"


def run_stack(
    cfg: Settings, *, host: str, port: int, embedded: bool, out: TextIO = sys.stdout
) -> int:
    from demo import seed
    from migrations_runner import upgrade
    from models.db import make_engine, session_factory

    assert cfg.database_url is not None
    upgrade(cfg.database_url)
    engine = make_engine(cfg.database_url, pool_size=2)
    tokens = seed.run(
        session_factory(engine),
        now=datetime.now(UTC),
        shards=cfg.rollup_platform_shards,
        out=out,
        tokens_file=tokens_file(cfg),
    )
    # One outbound webhook endpoint on a local sink, so the demo shows deliveries.
    from devstack.webhook_sink import register_demo_endpoint

    sink_secret = cfg.local_dir / SINK_SECRET_FILE
    register_demo_endpoint(
        session_factory(engine), port=cfg.webhook_sink_port, secret_file=sink_secret
    )
    engine.dispose()

    env = _dev_env()
    # The children talk to this stack's mock and API, on the ports it was given.
    env["STRIPE_API_BASE"] = f"http://127.0.0.1:{cfg.mock_port}"
    env["BILLING_API_PORT"] = str(port)
    env["BILLING_MOCK_PORT"] = str(cfg.mock_port)
    stack = children(cfg, host=host, port=port, tokens=tokens or {})
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    def start(child: Child) -> None:
        child.process = subprocess.Popen(child.argv, cwd=PROJECT_ROOT, env=env)

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    cfg.local_dir.mkdir(parents=True, exist_ok=True)
    pid_file(cfg.local_dir).write_text(str(os.getpid()))
    try:
        for child in stack:
            if not child.after_api:
                start(child)
        if not api_is_up(f"http://{host}:{port}", seconds=120, stopping=lambda: stopping):
            if not stopping:
                out.write("the API did not come up; see the messages above\n")
            return 1 if not stopping else 0
        for child in stack:
            if child.after_api:
                start(child)
        if not wait_worker(cfg, 60):
            out.write("the sync worker did not answer; see the messages above\n")
            return 1
        banner(out, host=host, port=port, mock_port=cfg.mock_port, tokens=tokens or {})
        while not stopping:
            for child in stack:
                code = child.process.poll() if child.process else None
                if code is not None:
                    out.write(f"{child.name} exited with code {code}; stopping the stack\n")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        out.write("stopping...\n")
        _stop(stack)
        with contextlib.suppress(FileNotFoundError):
            pid_file(cfg.local_dir).unlink()
        if embedded:
            from devstack.services import stop_embedded

            stop_embedded(cfg.local_dir)
            out.write("embedded PostgreSQL and Redis stopped (data kept in .local/)\n")
