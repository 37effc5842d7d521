"""GraphiQL is served from the app itself: the page a browser gets at /graphql names no other
host, and every script and stylesheet it names is served here. (tests/test_dashboard_browser.py
loads it in Chromium with every other host blocked.)"""

from __future__ import annotations

import re
from html.parser import HTMLParser

from tests.api_helpers import Api

EXTERNAL = re.compile(r"(?:https?:)?//[^/\s\"'<>]+", re.IGNORECASE)


class _Refs(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.refs: list[str] = []
        self.inline_scripts = 0
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        for name in ("src", "href"):
            if values.get(name):
                self.refs.append(values[name] or "")
        if tag == "script" and not values.get("src"):
            self._in_script = True

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1


def graphiql_page(api: Api) -> tuple[str, _Refs]:
    response = api.client.get("/graphql", headers={"Accept": "text/html"})
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    parser = _Refs()
    parser.feed(response.text)
    return response.text, parser


def test_graphiql_page_names_no_other_host(api: Api) -> None:
    html, refs = graphiql_page(api)
    assert "GraphiQL" in html
    assert EXTERNAL.findall(html) == []
    assert refs.inline_scripts == 0  # the start-up code is a file too, so a CSP can forbid inline


def test_every_asset_graphiql_names_is_served(api: Api) -> None:
    _, refs = graphiql_page(api)
    scripts = [r for r in refs.refs if r.endswith(".js")]
    styles = [r for r in refs.refs if r.endswith(".css")]
    assert len(scripts) >= 4 and len(styles) >= 1, refs.refs  # react, react-dom, graphiql, ours
    for ref in refs.refs:
        if ref.startswith("data:"):
            continue
        response = api.client.get(ref)
        assert response.status_code == 200, ref
        assert len(response.content) > 0, ref
        kind = response.headers["content-type"]
        assert ("javascript" in kind) if ref.endswith(".js") else True, (ref, kind)
        assert ("text/css" in kind) if ref.endswith(".css") else True, (ref, kind)


def test_vendored_assets_carry_their_licences(api: Api) -> None:
    from gql import graphiql_static as graphiql

    names = {p.name for p in graphiql.STATIC_DIR.rglob("LICENSE*")}
    assert names, "no licence files next to the vendored assets"
    for package_dir in (p for p in graphiql.STATIC_DIR.iterdir() if p.is_dir()):
        assert any(package_dir.glob("LICENSE*")), f"{package_dir.name} has no LICENSE"


def test_graphql_still_answers_json(api: Api) -> None:
    body = api.gql("{ __typename }", None)
    assert body["data"] == {"__typename": "Query"}
