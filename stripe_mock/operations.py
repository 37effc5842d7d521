"""What an API endpoint is: a method, a path template and a synchronous handler."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .params import Reader
from .store import Store

JSON = dict[str, Any]
# Handlers run under the store lock and must not await: that keeps each request atomic.
Handler = Callable[[Store, Mapping[str, str], Reader], JSON]


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    handler: Handler

    @property
    def endpoint(self) -> str:
        """The name used by fault rules and stats, e.g. `POST /v1/invoices/{id}/add_lines`."""
        return f"{self.method} {self.path}"
