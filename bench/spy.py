"""Where a server's CPU time goes: py-spy samples of a worker under load, in the README's buckets.

`record(pid, seconds, out)` runs `py-spy record --gil` (raw stacks) on one process: only
samples holding the GIL count, i.e. Python's CPU, not waits on PostgreSQL or for the GIL.
`buckets(path)` reads the stacks and charges each sample to one bucket. A sample is charged to
authentication when any frame is the token lookup (its SQL included: that is what authenticating costs); otherwise to the first bucket found walking from the leaf up, so a
psycopg frame under an ORM load counts as SQL and the ORM's own frames as row -> object.

    python bench/spy.py stacks.txt   # prints the buckets as JSON
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (bucket, substrings of a frame "function (file:line)"), tested leaf first, in this order.
LEAF_RULES: list[tuple[str, tuple[str, ...]]] = [
    (
        "logging and metrics",
        ("(logging/", "(pythonjsonlogger/", "(prometheus_client/", "gql/logs.py"),
    ),
    ("JSON encoding", ("(json/", "orjson", "(starlette/responses.py")),
    ("SQL round trips", ("(psycopg/", "(psycopg_pool/", "(socket.py", "(selectors.py")),
    (
        "session and pool",
        ("(sqlalchemy/pool/", "(sqlalchemy/engine/", "(sqlalchemy/orm/session.py"),
    ),
    (
        "row -> object",
        ("(sqlalchemy/", "(sqlmodel/", "from_row", "(gql/core/money.py", "(gql/core/scalars.py"),
    ),
    ("graphql-core execution", ("(graphql/", "(strawberry/", "(gql/")),
    ("ASGI and Starlette", ("(starlette/", "(uvicorn/", "(h11/", "(httptools/", "(asyncio/")),
]
AUTH_FRAMES = ("viewer_from_authorization", "resolve_token", "TokenCache")
BUCKETS = ["authentication"] + [name for name, _ in LEAF_RULES] + ["other"]


def record(pid: int, seconds: int, out: Path) -> subprocess.Popen[bytes]:
    """Starts py-spy on `pid` for `seconds`; the caller waits for it after the load."""
    # The virtualenv's py-spy (a dev dependency), also when it is not on PATH.
    exe = Path(sys.executable).parent / "py-spy"
    argv = [
        str(exe) if exe.exists() else "py-spy",
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(seconds),
        "--rate",
        "250",
        "--gil",
    ]
    return subprocess.Popen(
        [*argv, "--format", "raw", "--output", str(out), "--nonblocking"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def bucket_of(frames: list[str]) -> str:
    if any(a in f for f in frames for a in AUTH_FRAMES):
        return "authentication"
    for frame in reversed(frames):  # leaf last in py-spy's collapsed format
        for name, needles in LEAF_RULES:
            if any(n in frame for n in needles):
                return name
    return "other"


def buckets(path: Path) -> dict[str, float]:
    """Share of the samples (percent) in each bucket."""
    counts: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        # The process's idle threads (the GraphQL pool waiting for work) are not CPU time.
        frames = stack.split(";")
        if frames and "_worker (concurrent/futures/thread.py" in stack and len(frames) < 6:
            continue
        counts[bucket_of(frames)] += int(n)
    total = sum(counts.values()) or 1
    return {b: round(100 * counts[b] / total, 1) for b in BUCKETS if counts[b]} | {
        "samples": float(total)
    }


if __name__ == "__main__":
    print(json.dumps(buckets(Path(sys.argv[1]))))
