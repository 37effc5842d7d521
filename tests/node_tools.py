"""The npm packages the suite runs (graphql-http's audit, graphql-schema-linter), installed once
per checkout from tests/graphql_http_audit/package-lock.json. Two xdist workers may ask at the
same moment, so the install takes a file lock."""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
from pathlib import Path

import pytest

NODE_DIR = Path(__file__).parent / "graphql_http_audit"


def npm_ci() -> None:
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        if os.environ.get("CI") == "true":
            pytest.fail("npm and node are needed for the graphql-http audit and the schema lint")
        pytest.skip("SKIPPED LOUDLY: npm/node missing, the node-based checks did not run")
    with open(NODE_DIR / ".npm-install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (NODE_DIR / "node_modules" / ".package-lock.json").exists():
            subprocess.run(
                [npm, "ci", "--no-audit", "--no-fund"], cwd=NODE_DIR, check=True, timeout=600
            )
