"""openapi.json: committed, served, in step with the code, and fuzzed with schemathesis (a
bounded number of examples) without one 500."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.specs.openapi.checks import (
    response_schema_conformance,
    status_code_conformance,
)
from starlette.testclient import TestClient

from gql.usage import http, openapi
from models.errors import ErrorCode
from settings import Settings
from tests.api_helpers import Api, api_app
from tests.test_usage_api import world

__all__ = ["world"]

ROOT = Path(__file__).resolve().parent.parent


def test_the_committed_document_is_what_the_code_builds() -> None:
    committed = (ROOT / "openapi.json").read_text()
    assert committed == openapi.text(), "run: python -c 'from gql.usage import openapi; ...'"


def test_the_document_is_served(api: Api) -> None:
    response = api.client.get("/openapi.json")
    assert response.status_code == 200
    assert response.json() == json.loads((ROOT / "openapi.json").read_text())


def test_every_code_the_edge_answers_is_documented() -> None:
    source = Path(http.__file__).read_text()
    documented = {c for codes in openapi.REQUEST_CODES.values() for c in codes}
    answered = {c for c in documented if f'"{c}"' in source}
    # Those not literally in http.py come from gql/core/errors.database_failure.
    assert documented - answered <= {"DATABASE_UNAVAILABLE", "SERVICE_UNAVAILABLE"}
    assert set(openapi.EVENT_CODES) <= set(ErrorCode)


def test_schemathesis_finds_no_server_error(
    database_url: str, redis_url: str, world: dict[str, Any]
) -> None:
    app = api_app(Settings(database_url=database_url, redis_url=redis_url), lambda _: None)
    with TestClient(app):  # runs the lifespan: the engine is disposed at the end
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        operation = schema["/v1/usage"]["POST"]
        statuses: list[int] = []

        @settings(
            max_examples=60,
            deadline=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=operation.as_strategy())
        def fuzz(case: Any) -> None:
            response = case.call(headers={"Authorization": f"Bearer {world['metering']}"})
            statuses.append(response.status_code)
            assert response.status_code < 500, response.text
            case.validate_response(
                response, checks=[status_code_conformance, response_schema_conformance]
            )

        fuzz()
    assert len(statuses) >= 30 and 200 in statuses, statuses
