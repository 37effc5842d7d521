"""A PostgreSQL server of a test's own, which the test may stop and start again (the shared one
must never be stopped): initdb and pg_ctl from this machine's PostgreSQL binaries, run as the
`postgres` user when the tests run as root (PostgreSQL refuses root)."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

BIN_DIRS = [Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")), Path("/usr/bin")]


def _bin(name: str) -> Path | None:
    for folder in BIN_DIRS:
        if (folder / name).exists():
            return folder / name
    found = shutil.which(name)
    return Path(found) if found else None


@dataclass
class Throwaway:
    data: Path
    port: int
    log: Path

    @property
    def url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *argv: str) -> None:
        command = [str(a) for a in argv]
        if os.geteuid() == 0:
            command = ["su", "postgres", "-c", " ".join(f"'{a}'" for a in command)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=60)
        if done.returncode != 0:
            raise RuntimeError(f"{argv[0]} failed: {done.stdout}{done.stderr}")

    def start(self) -> None:
        self._run(
            str(_bin("pg_ctl")),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-o",
            f"-p {self.port} -k {self.data} -c listen_addresses=127.0.0.1 -c fsync=off",
            "start",
        )

    def stop(self) -> None:
        self._run(str(_bin("pg_ctl")), "-D", str(self.data), "-m", "fast", "-w", "stop")


@contextmanager
def throwaway_postgres(port: int) -> Iterator[Throwaway]:
    initdb = _bin("initdb")
    if initdb is None or _bin("pg_ctl") is None:
        pytest.skip("no initdb/pg_ctl on this machine (set PG_BIN)")
    # Not under pytest's tmp_path: pytest makes /tmp/pytest-of-<user> 0700 again at the start
    # of every session (another test run's), which locks the postgres user out mid-test.
    root = Path(tempfile.mkdtemp(prefix="billing-pg-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    server = Throwaway(data=root / "data", port=port, log=root / "server.log")
    try:
        server._run(
            str(initdb), "-D", str(server.data), "-U", "postgres", "--auth=trust", "-E", "UTF8"
        )
        server.start()
        yield server
    finally:
        with contextlib.suppress(RuntimeError):  # not running
            server.stop()
        shutil.rmtree(root, ignore_errors=True)
