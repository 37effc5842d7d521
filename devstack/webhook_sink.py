"""`make run`'s demo receiver of outbound webhooks: one endpoint registered on it at start-up,
every delivery's signature verified and printed as one line, so the demo shows deliveries.

A developer tool, not part of the product: it answers 200 to a well-signed delivery and 400 to
anything else, and keeps nothing.
"""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy.orm import sessionmaker
from sqlmodel import Session

from models.db import transaction
from models.webhooks_out import endpoints, events
from sync.webhooks_out import signing

MAX_BODY = 1_000_000


def register_demo_endpoint(sessions: sessionmaker[Session], *, port: int, secret_file: Path) -> str:
    """The sink's endpoint (every event type), registered once and reused by later runs; its
    secret written to `secret_file` (mode 600) for the sink. Returns the endpoint's URL."""
    url = f"http://127.0.0.1:{port}/webhooks"
    with transaction(sessions) as s:
        row = endpoints.ensure_endpoint(
            s, url=url, event_types=list(events.EVENT_TYPES), now=datetime.now(UTC)
        )
        secret = row.secret
    secret_file.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(secret)
    return url


def serve(host: str, port: int, *, secret_file: str) -> int:
    secret = Path(secret_file).read_text().strip()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(min(length, MAX_BODY))
            ok = signing.verify(secret, self.headers.get(signing.HEADER, ""), raw, now=time.time())
            summary = _summary(raw)
            verdict = "signature ok" if ok else "BAD SIGNATURE"
            print(f"webhook sink: {summary} ({verdict})", flush=True)
            self.send_response(200 if ok else 400)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(b'{"received": true}' if ok else b'{"error": "bad signature"}')

        def log_message(self, *args: Any) -> None:
            return None

    server = ThreadingHTTPServer((host, port), Handler)
    print(f"webhook sink listening on http://{host}:{port}/webhooks", file=sys.stderr, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


def _summary(raw: bytes) -> str:
    try:
        doc = json.loads(raw)
        obj = doc.get("data", {}).get("object", {})
        what = obj.get("number") or obj.get("id") or obj.get("threshold_cents") or ""
        org = obj.get("organization") or ""
        return f"{doc.get('type')} {doc.get('id')} {org} {what}".strip()
    except (ValueError, AttributeError):
        return f"{len(raw)} bytes that are not an event"
