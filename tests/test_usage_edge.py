"""The edge of POST /v1/usage and recordUsage (issue 20): content types, bodies no JSON parser
should trust, a real request id in every error, and a database that is gone (not busy)."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

from gql.core.limits import Limits
from models.usage import ingest
from settings import Settings
from tests.api_helpers import Api, api_app
from tests.test_usage_api import event, post, world

__all__ = ["world"]  # the fixture, imported for pytest


def auth(token: str, content_type: str = "application/json") -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "content-type": content_type}


@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "application/xml", ""]
)
def test_a_body_that_is_not_declared_json_is_415(
    api: Api, world: dict[str, Any], content_type: str
) -> None:
    response = api.client.post(
        "/v1/usage", content=b'{"events": []}', headers=auth(world["metering"], content_type)
    )
    assert response.status_code == 415
    assert response.json()["code"] == "UNSUPPORTED_MEDIA_TYPE"


def test_json_with_a_charset_parameter_is_json(api: Api, world: dict[str, Any]) -> None:
    response = api.client.post(
        "/v1/usage",
        content=b'{"events": []}',
        headers=auth(world["metering"], "application/json; charset=utf-8"),
    )
    assert response.status_code == 200, response.text


def test_a_utf16_body_is_malformed_not_accepted(api: Api, world: dict[str, Any]) -> None:
    body = '{"events": []}'.encode("utf-16")
    response = api.client.post("/v1/usage", content=body, headers=auth(world["metering"]))
    assert (response.status_code, response.json()["code"]) == (400, "MALFORMED_BODY")


def test_every_error_answer_carries_the_request_id(api: Api, world: dict[str, Any]) -> None:
    answers = [
        post(api, None, {"events": []}),
        post(api, world["metering"], None, raw=b"{not json"),
        api.client.post("/v1/usage", content=b"x", headers=auth(world["metering"], "text/plain")),
    ]
    for response in answers:
        assert response.json()["requestId"] == response.headers["x-request-id"] != "-"


RAW_BAD = [
    ("NaN", b'{"a": NaN}'),
    ("Infinity", b'{"a": Infinity}'),
    ("-Infinity", b'{"a": [-Infinity]}'),
    ("NUL key", b'{"a\\u0000": 1}'),
    ("NUL value", b'{"a": "\\u0000"}'),
    ("surrogate value", b'{"a": "\\ud800"}'),
    ("surrogate key", b'{"\\udc00": 1}'),
]


@pytest.mark.parametrize(("name", "metadata"), RAW_BAD, ids=[r[0] for r in RAW_BAD])
def test_unstorable_metadata_is_a_per_event_error_beside_a_valid_event(
    api: Api, world: dict[str, Any], name: str, metadata: bytes
) -> None:
    good = event(1)
    bad = (
        b'{"id": "bad", "organizationSlug": "acme", "product": "machines-shared-cpu", '
        b'"quantity": "1", "occurredAt": "' + good["occurredAt"].encode() + b'", '
        b'"metadata": ' + metadata + b"}"
    )
    import orjson

    raw = b'{"events": [' + orjson.dumps(good) + b", " + bad + b"]}"
    response = post(api, world["metering"], None, raw=raw)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["accepted"] == 1
    assert [(r["index"], r["code"]) for r in body["rejected"]] == [(1, "INVALID_VALUE")]


@pytest.mark.parametrize("where", ["id", "app", "product", "organizationSlug"])
def test_a_lone_surrogate_in_a_field_is_a_per_event_error(
    api: Api, world: dict[str, Any], where: str
) -> None:
    import orjson

    good = event(1)
    bad = orjson.dumps({**event(2), where: "SURROGATE"}).replace(b"SURROGATE", b"\\ud800")
    response = post(
        api, world["metering"], None, raw=b'{"events": [' + orjson.dumps(good) + b"," + bad + b"]}"
    )
    assert response.status_code == 200, response.text
    assert response.json()["accepted"] == 1
    assert [r["code"] for r in response.json()["rejected"]] == ["INVALID_VALUE"]


def test_record_usage_internal_error_quotes_the_real_request_id(
    api: Api, world: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("a bug")

    monkeypatch.setattr(ingest, "record_usage", broken)
    response = api.client.post(
        "/graphql",
        json={
            "query": "mutation($e: [UsageEventInput!]!) { recordUsage(input: {events: $e}) "
            "{ accepted } }",
            "variables": {
                "e": [
                    {
                        "id": "x",
                        "organizationSlug": "acme",
                        "product": "egress",
                        "quantity": "1",
                        "occurredAt": event(1)["occurredAt"],
                    }
                ]
            },
        },
        headers={"Authorization": f"Bearer {world['metering']}", "x-request-id": "req-abc"},
    )
    error = response.json()["errors"][0]
    assert error["extensions"] == {"code": "INTERNAL_ERROR", "requestId": "req-abc"}
    assert "req-abc" in error["message"]
    # And POST /v1/usage answers a JSON 500 with the code and id, never a plain-text one.
    plain = api.client.post(
        "/v1/usage", json={"events": [event(1)]},
        headers={"Authorization": f"Bearer {world['metering']}", "x-request-id": "req-def"},
    )  # fmt: skip
    assert plain.status_code == 500
    assert plain.json() == {
        "code": "INTERNAL_ERROR",
        "message": "Internal error; quote request id req-def to support.",
        "requestId": "req-def",
    }


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A port on which nothing listens: the database is gone, not busy."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    yield port


def test_an_unreachable_database_is_a_json_503_on_both_endpoints(
    refused_port: int, redis_url: str
) -> None:
    settings = Settings(
        database_url=f"postgresql://postgres@127.0.0.1:{refused_port}/billing", redis_url=redis_url
    )
    app = api_app(settings, lambda _: None, limits=Limits(db_connect_timeout_seconds=1))
    with TestClient(app, raise_server_exceptions=False) as client:
        usage = client.post(
            "/v1/usage", json={"events": [event(1)]}, headers={"Authorization": "Bearer bt_x"}
        )
        graphql = client.post(
            "/graphql", json={"query": "{ viewer { isAdmin } }"},
            headers={"Authorization": "Bearer bt_x"},
        )  # fmt: skip
    assert (usage.status_code, usage.headers.get("retry-after")) == (503, "1")
    assert usage.json()["code"] == "DATABASE_UNAVAILABLE"
    assert usage.json()["requestId"] == usage.headers["x-request-id"]
    assert graphql.status_code == 503
    error = graphql.json()["errors"][0]
    assert error["extensions"]["code"] == "DATABASE_UNAVAILABLE"
    assert "busy" not in error["message"]
