"""The reference dashboard: static HTML, CSS and JavaScript modules that talk only to the public
GraphQL API with the user's token. No build step; nothing here reads the database."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, RedirectResponse
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).parent


async def _index(request: object) -> FileResponse:
    # no-store: a deploy must not leave a stale page pointing at renamed fields.
    return FileResponse(HERE / "index.html", headers={"Cache-Control": "no-store"})


async def _slash(request: object) -> RedirectResponse:
    return RedirectResponse("/dashboard")


def routes() -> list[BaseRoute]:
    return [
        Route("/dashboard", _index, methods=["GET"]),
        Route("/dashboard/", _slash, methods=["GET"]),
        Mount("/dashboard/static", StaticFiles(directory=HERE / "static"), name="dashboard-static"),
    ]
