"""The reference dashboard: static HTML, CSS and JavaScript modules that talk only to the public
GraphQL API with the user's token. No build step; nothing here reads the database."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import FileResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

HERE = Path(__file__).parent

# The page loads only its own modules and stylesheet and talks only to /graphql, so it can be
# held to exactly that: no inline script or style, no other host, never framed (a framed page
# holding a token invites clickjacking), and the token-bearing URL never sent as a Referer.
# tests/test_dashboard_browser.py checks these and that the page reports no CSP violation.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}


class _Static(StaticFiles):
    """The dashboard's modules and stylesheet, with nosniff (a module must be served as
    JavaScript) and the same policy as the page."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


async def _index(request: object) -> FileResponse:
    # no-store: a deploy must not leave a stale page pointing at renamed fields.
    return FileResponse(
        HERE / "index.html", headers={"Cache-Control": "no-store", **SECURITY_HEADERS}
    )


async def _slash(request: object) -> RedirectResponse:
    return RedirectResponse("/dashboard")


def routes() -> list[BaseRoute]:
    return [
        Route("/dashboard", _index, methods=["GET"]),
        Route("/dashboard/", _slash, methods=["GET"]),
        Mount("/dashboard/static", _Static(directory=HERE / "static"), name="dashboard-static"),
    ]
