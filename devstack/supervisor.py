"""`billing run`: the whole stack in one terminal, for a developer's machine.

Migrates, seeds demo data when the database is empty, starts the mock Stripe, the API, a Celery
worker and Celery beat as child processes, prints how to use them, and on Ctrl-C stops the
children and then the embedded servers it started. Production runs each process on its own
(`billing serve`, `billing worker`, `billing beat`) under a real supervisor.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TextIO

import httpx

from settings import PROJECT_ROOT, Settings


@dataclass
class Child:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "cli", *args]


def _wait_http(url: str, *, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1.0).status_code < 500:
                return True
        except httpx.HTTPError:
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
    out: TextIO, *, host: str, port: int, tokens: dict[str, str], running: bool = True
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
   Mock Stripe  http://127.0.0.1:12111/_mock/invoices
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

    sink_secret = cfg.local_dir / "webhook-sink-secret"
    register_demo_endpoint(
        session_factory(engine), port=cfg.webhook_sink_port, secret_file=sink_secret
    )
    engine.dispose()

    env = _dev_env()
    children = [
        Child("mock-stripe", _cli("mock-stripe", "--port", "12111")),
        Child("api", _cli("serve", "--host", host, "--port", str(port))),
        Child("worker", _cli("worker", "--concurrency", "2")),
        Child("beat", _cli("beat")),
        Child(
            "webhook-sink",
            _cli(
                "webhook-sink",
                "--port",
                str(cfg.webhook_sink_port),
                "--secret-file",
                str(sink_secret),
            ),
        ),
    ]
    if tokens and "admin" in tokens:
        # A simulated metering feed, so that the month so far moves while you watch.
        feed_url = f"http://{host}:{port}/v1/usage"
        children.append(Child("feed", _cli("feed", "--url", feed_url, "--token", tokens["admin"])))
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        for child in children:
            child.process = subprocess.Popen(child.argv, cwd=PROJECT_ROOT, env=env)
        if not _wait_http(f"http://{host}:{port}/healthz", seconds=120):
            out.write("the API did not come up; see the messages above\n")
            return 1
        if not wait_worker(cfg, 60):
            out.write("the sync worker did not answer; see the messages above\n")
            return 1
        banner(out, host=host, port=port, tokens=tokens or {})
        while not stopping:
            for child in children:
                assert child.process is not None
                code = child.process.poll()
                if code is not None:
                    out.write(f"{child.name} exited with code {code}; stopping the stack\n")
                    return 1
            time.sleep(0.5)
        return 0
    finally:
        out.write("stopping...\n")
        _stop(children)
        if embedded:
            from devstack.services import stop_embedded

            stop_embedded(cfg.local_dir)
            out.write("embedded PostgreSQL and Redis stopped (data kept in .local/)\n")
