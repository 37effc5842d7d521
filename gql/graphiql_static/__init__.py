"""GraphiQL served from the wheel: the page and its vendored assets (see VENDORED.md), so
`/graphql` in a browser works with no internet. Strawberry's own page loads them from unpkg."""

from __future__ import annotations

from pathlib import Path

from starlette.responses import HTMLResponse
from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

HERE = Path(__file__).parent
STATIC_DIR = HERE / "assets"
STATIC_PATH = "/graphiql/static"

# Everything is same-origin now, so the page can be held to it. GraphiQL (CodeMirror, React's
# style props) writes style attributes, hence 'unsafe-inline' for styles only; its fonts and
# icons are data: URLs inside graphiql.min.css.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
        "img-src 'self' data:; font-src 'self' data:; connect-src 'self'; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
}
_PAGE = (HERE / "graphiql.html").read_text(encoding="utf-8")


def page() -> HTMLResponse:
    """The GraphiQL page (BillingGraphQL.render_graphql_ide answers with it)."""
    return HTMLResponse(_PAGE, headers=HEADERS)


def routes() -> list[BaseRoute]:
    return [Mount(STATIC_PATH, StaticFiles(directory=STATIC_DIR), name="graphiql-static")]
