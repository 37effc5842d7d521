"""What every command prints the same way."""

from __future__ import annotations

import sys


def fail(message: str, code: int = 2) -> int:
    """A command's refusal: one line on stderr, and the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code
