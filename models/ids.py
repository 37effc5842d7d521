"""Opaque public identifiers: a type prefix and 80 random bits, neither guessable nor sequential."""

from __future__ import annotations

import base64
import secrets


def new_public_id(prefix: str) -> str:
    token = base64.b32encode(secrets.token_bytes(10)).decode().lower()
    return f"{prefix}_{token}"
