"""`python -m tests.serve_app PORT DATABASE_URL REDIS_URL`: the API alone under uvicorn, as
`billing serve` runs it but with a no-op enqueue, for tests that need the server in its own
process (so the client's CPU does not share the server's GIL)."""

from __future__ import annotations

import sys

import uvicorn

from settings import Settings
from tests.api_helpers import api_app


def main() -> None:
    port, database_url, redis_url = sys.argv[1], sys.argv[2], sys.argv[3]
    app = api_app(Settings(database_url=database_url, redis_url=redis_url), lambda _: None)
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


if __name__ == "__main__":
    main()
