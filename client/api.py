"""GraphQL over HTTP with httpx: one POST per document, errors turned into exit codes.

Why not the `gql` library: its import name is `gql`, the same as this repository's own API
package, so inside this project one of the two would shadow the other (docs/client.md). A
GraphQL request is one JSON POST; httpx is already a dependency and gives us the timeouts and
transport errors we want to report, in ~40 lines.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

# Exit codes (docs/client.md): 0 ok, 1 the API said no (userErrors, not found), 2 bad usage,
# 3 the token is missing or refused, 4 the API cannot be reached or is unavailable.
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_AUTH = 3
EXIT_UNREACHABLE = 4

DEFAULT_API = "http://127.0.0.1:8000"


class ClientError(Exception):
    """A problem to print on stderr, with the exit code it ends the command with."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


@dataclass
class Api:
    url: str
    token: str
    timeout: float = 15.0

    @classmethod
    def from_env(cls, env: dict[str, str]) -> Api:
        token = (env.get("BILLING_TOKEN") or "").strip()
        if not token:
            raise ClientError(
                "no token: set BILLING_TOKEN (`billing token create --org <slug>` makes one)",
                EXIT_AUTH,
            )
        base = (env.get("BILLING_API") or DEFAULT_API).strip().rstrip("/")
        url = base if base.endswith("/graphql") else f"{base}/graphql"
        if not url.startswith(("http://", "https://")):
            raise ClientError(f"BILLING_API must be an http(s) address, not {base!r}", EXIT_USAGE)
        return cls(url, token)

    def query(self, document: str, **variables: Any) -> dict[str, Any]:
        """The `data` of a successful answer; ClientError for anything else."""
        try:
            response = httpx.post(
                self.url,
                json={"query": document, "variables": variables},
                headers={"Authorization": f"Bearer {self.token}"},
                timeout=httpx.Timeout(self.timeout, connect=5.0),
            )
        except httpx.TimeoutException as e:
            raise ClientError(
                f"the billing API at {self.url} did not answer in time ({type(e).__name__})",
                EXIT_UNREACHABLE,
            ) from e
        except httpx.TransportError as e:
            raise ClientError(
                f"cannot reach the billing API at {self.url} ({e}); is it running? "
                "(BILLING_API sets the address)",
                EXIT_UNREACHABLE,
            ) from e
        if response.status_code >= 500:
            after = response.headers.get("Retry-After")
            raise ClientError(
                f"the billing API is unavailable (HTTP {response.status_code})"
                + (f"; retry after {after} s" if after else ""),
                EXIT_UNREACHABLE,
            )
        try:
            body = response.json()
        except ValueError as e:
            raise ClientError(
                f"{self.url} answered HTTP {response.status_code} without JSON: is BILLING_API "
                "the billing API?",
                EXIT_UNREACHABLE,
            ) from e
        errors = body.get("errors") if isinstance(body, dict) else None
        if errors:
            code = str((errors[0].get("extensions") or {}).get("code") or "")
            message = str(errors[0].get("message") or "")
            if code == "UNAUTHENTICATED":
                raise ClientError(
                    "the API refused the token in BILLING_TOKEN (unknown or revoked)", EXIT_AUTH
                )
            if code == "FORBIDDEN":
                raise ClientError(f"not allowed with this token: {message}", EXIT_AUTH)
            raise ClientError(f"the API answered an error: {code} {message}".strip(), EXIT_REFUSED)
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            raise ClientError(f"unexpected answer (HTTP {response.status_code})", EXIT_REFUSED)
        return data
