"""POST /v1/usage: the metering pipeline's way in (up to 10,000 events a request).

Plain JSON over HTTP rather than GraphQL because a 10,000-event batch through the GraphQL
executor costs more in input coercion than the ingest itself. The same domain function answers
both. Errors of the request as a whole are JSON `{"code", "message", "requestId"}`, the
request id also in the X-Request-Id header: 415 UNSUPPORTED_MEDIA_TYPE (a Content-Type other
than application/json), 401 UNAUTHENTICATED, 403 FORBIDDEN, 400 MALFORMED_BODY (not UTF-8 JSON),
413 TOO_MANY_EVENTS / BODY_TOO_LARGE; 503 DATABASE_UNAVAILABLE (PostgreSQL cannot be reached) or
SERVICE_UNAVAILABLE (it is busy: pool or statement timeout) with Retry-After, after which the
same batch can be sent again (event ids make the resend count once); 500 INTERNAL_ERROR for a
bug, never plain text. Per-event problems are in the 200 answer's `rejected` list. The contract
is openapi.json at the repository's root, served at /openapi.json.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import orjson
from sqlalchemy.orm import sessionmaker
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from gql.core import permissions
from gql.core.errors import database_failure, request_id_var
from gql.usage import openapi
from models.db import transaction
from models.usage import ingest

log = logging.getLogger("billing.api")
MAX_BODY_BYTES = 16 * 1024 * 1024  # 10,000 events of ~1 KB each, with room


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse(
        {"code": code, "message": message, "requestId": request_id_var.get()},
        status_code=status,
        headers={"Retry-After": "1"} if status == 503 else None,
    )


def _guarded(answer: Callable[[], Response]) -> Response:
    """`answer()`, or the JSON answer for a database that is busy or gone (503) or a bug (500,
    logged in full with the request id)."""
    try:
        return answer()
    except Exception as error:
        failure = database_failure(error)
        if failure is not None:
            log.warning("database unavailable", extra={"error": type(error).__name__})
            return _error(503, *failure)
        log.exception("internal error", extra={"request_id": request_id_var.get()})
        return _error(
            500,
            "INTERNAL_ERROR",
            f"Internal error; quote request id {request_id_var.get()} to support.",
        )


def _is_json(content_type: str) -> bool:
    return content_type.split(";", 1)[0].strip().lower() == "application/json"


class PartitionKeeper:
    """Creates the usage_events partitions of the current and next month the first time this
    process sees a new month (two workers racing serialise on an advisory lock). If it fails,
    ingestion still works: the DEFAULT partition takes the rows until it succeeds."""

    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self.sessions = sessions
        self.month: date | None = None

    def ensure(self, now: datetime) -> None:
        month = ingest.month_start(now)
        if self.month == month:
            return
        try:
            with transaction(self.sessions) as s:
                ingest.ensure_partitions(s, now=now, months_ahead=1)
            self.month = month
        except Exception:  # the default partition covers; retry on the next request
            log.exception("could not create usage_events partitions")


def _has_float(value: Any) -> bool:
    if isinstance(value, float):
        return True
    if isinstance(value, dict):
        return any(_has_float(v) for v in value.values())
    if isinstance(value, list):
        return any(_has_float(v) for v in value)
    return False


def _loads(raw: bytes) -> Any:
    """JSON with exact numbers: a JSON 0.1 becomes Decimal("0.1"), never a binary float.

    orjson (several times faster than json) has no parse_float, so its answer is used only when
    it holds no float at all (the metering pipeline sends quantities as strings); otherwise,
    and for anything orjson refuses (integers past 64 bits, NaN), the standard library parses
    the body again with Decimal numbers, so both paths give the same events and errors."""
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        pass
    else:
        if not _has_float(body):
            return body
    # A str, not bytes: json.loads would guess UTF-16 or UTF-32 from bytes, and JSON over HTTP
    # is UTF-8 (RFC 8259). NaN and Infinity become Decimals, which the ingest refuses per event.
    return json.loads(raw.decode("utf-8"), parse_float=Decimal, parse_constant=Decimal)


def _parse_body(raw: bytes) -> list[Any] | JSONResponse:
    try:
        body = _loads(raw)
    except (ValueError, RecursionError):
        return _error(400, "MALFORMED_BODY", "the body is not valid JSON")
    if not isinstance(body, dict) or not isinstance(body.get("events"), list):
        return _error(400, "MALFORMED_BODY", 'send a JSON object {"events": [...]}')
    events: list[Any] = body["events"]
    if len(events) > ingest.MAX_EVENTS_PER_CALL:
        return _error(
            413,
            "TOO_MANY_EVENTS",
            f"at most {ingest.MAX_EVENTS_PER_CALL:,} events per request; split the batch",
        )
    return events


def routes(
    sessions: sessionmaker[Session], clock: Callable[[], datetime] = lambda: datetime.now(UTC)
) -> list[Route]:
    keeper = PartitionKeeper(sessions)

    def authorize(header: str) -> JSONResponse | None:
        with sessions() as s:
            viewer = permissions.viewer_from_authorization(s, header, now=clock())
        if viewer is None:
            return _error(
                401,
                "UNAUTHENTICATED",
                "send Authorization: Bearer <a live admin or metering token>",
            )
        if not permissions.can_record_usage(viewer):
            return _error(403, "FORBIDDEN", "posting usage needs an admin or a metering token")
        return None

    def ingest_request(raw: bytes) -> Response:
        return _guarded(lambda: _ingest(raw))

    def _ingest(raw: bytes) -> Response:
        # Parsing a 10,000-event body takes tens of milliseconds: here, in the worker thread,
        # not on the event loop, where it would stall every other request of this process.
        events = _parse_body(raw)
        if isinstance(events, JSONResponse):
            return events
        now = clock()
        keeper.ensure(now)
        inputs = [ingest.UsageEventInput.from_json(e) for e in events]
        with transaction(sessions) as s:
            result = ingest.record_usage(s, inputs, now=now, request_id=request_id_var.get())
        answer = {
            "accepted": result.accepted,
            "duplicates": result.duplicates,
            "rejected": [
                {"index": r.index, "id": r.id, "code": r.code, "message": r.message}
                for r in result.rejected
            ],
        }
        return Response(orjson.dumps(answer), media_type="application/json")

    async def post_usage(request: Request) -> Response:
        if not _is_json(request.headers.get("content-type", "")):
            return _error(
                415, "UNSUPPORTED_MEDIA_TYPE", "send the events as Content-Type: application/json"
            )
        denied = await run_in_threadpool(
            _guarded, lambda: authorize(request.headers.get("authorization", "")) or Response()
        )
        if denied.status_code != 200:
            return denied
        length = request.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
            return _error(413, "BODY_TOO_LARGE", f"the body is over {MAX_BODY_BYTES:,} bytes")
        chunks: list[bytes] = []  # joined once: `raw += chunk` copies the body per chunk
        size = 0
        async for chunk in request.stream():
            chunks.append(chunk)
            size += len(chunk)
            if size > MAX_BODY_BYTES:
                return _error(413, "BODY_TOO_LARGE", f"the body is over {MAX_BODY_BYTES:,} bytes")
        raw = b"".join(chunks)
        return await run_in_threadpool(ingest_request, raw)

    document = Response(openapi.text(), media_type="application/json")

    async def get_openapi(request: Request) -> Response:
        return document

    return [
        Route("/v1/usage", post_usage, methods=["POST"]),
        Route("/openapi.json", get_openapi, methods=["GET"]),
    ]
