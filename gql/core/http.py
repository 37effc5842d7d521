"""GraphQL over HTTP (https://graphql.github.io/graphql-over-http/) at our edge.

- Media type: `application/graphql-response+json` when the Accept header prefers it,
  `application/json` otherwise (and when Accept is missing or `*/*`), as before.
- Status codes under graphql-response+json: a request error (parse, validation, variable
  coercion, limits: nothing executed) answers 400 without `data`; a missing token 401; a body
  or document past its limit 413; a database that does not answer 503. Under application/json
  GraphQL errors stay 200 with `data`, as legacy clients expect; 413 and 503 apply to both.
- Every refusal is a GraphQL error body with `extensions.code` (and the request id), never
  Strawberry's plain-text 400 or a bare 500: non-object JSON, invalid UTF-8, JSON nested past
  Python's recursion limit, variables nested past `Limits.max_variables_depth`.

`RequestBodyLimit` is the ASGI middleware counting body bytes as they arrive.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import orjson
from cross_web import HTTPException
from graphql import GraphQLSyntaxError
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from strawberry.exceptions import MissingQueryError
from strawberry.http import GraphQLHTTPResponse
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.graphql import OperationType

from gql.core.enqueue import DeferredEnqueue
from gql.core.errors import (
    BAD_USER_INPUT,
    DATABASE_UNAVAILABLE,
    PARSE_FAILED,
    SERVICE_UNAVAILABLE,
    VALIDATION_FAILED,
    database_failure,
    request_id_var,
)
from gql.core.executor import BoundedExecutor, Saturated
from gql.core.limits import DEFAULT_LIMITS, Limits

log = logging.getLogger("billing.api")
GRAPHQL_RESPONSE = "application/graphql-response+json"
JSON = "application/json"
REQUEST_ERROR_CODES = {PARSE_FAILED, VALIDATION_FAILED, BAD_USER_INPUT, "PAYLOAD_TOO_LARGE"}


class RequestRefused(HTTPException):
    """A request refused before GraphQL ran, with the code clients branch on."""

    def __init__(self, status_code: int, reason: str, code: str = "BAD_REQUEST") -> None:
        super().__init__(status_code, reason)
        self.code = code


def preferred_media_type(accept: str) -> str:
    """graphql-response+json when the client ranks it at least as high as application/json."""
    best: dict[str, float] = {}
    for part in accept.split(","):
        media, *params = (p.strip() for p in part.split(";"))
        q = 1.0
        for p in params:
            if p.startswith("q="):
                try:
                    q = float(p[2:])
                except ValueError:
                    q = 0.0
        best[media.lower()] = max(q, best.get(media.lower(), 0.0))
    wanted = best.get(GRAPHQL_RESPONSE, 0.0)
    return GRAPHQL_RESPONSE if wanted > 0 and wanted >= best.get(JSON, 0.0) else JSON


def error_body(message: str, code: str) -> bytes:
    error = {"message": message, "extensions": {"code": code, "requestId": request_id_var.get()}}
    return json.dumps({"errors": [error]}).encode()


def error_response(status: int, message: str, code: str, media_type: str = JSON) -> Response:
    headers = {"Retry-After": "1"} if status == 503 else None
    return Response(
        error_body(message, code),
        status_code=status,
        media_type=f"{media_type}; charset=utf-8",
        headers=headers,
    )


def _json_depth_exceeds(value: object, limit: int) -> bool:
    """Iterative, so a hostile nesting cannot exhaust the Python stack here either."""
    stack: list[tuple[object, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((c, depth + 1) for c in children)
    return False


def status_for(result: ExecutionResult, media_type: str) -> int:
    codes = [(e.extensions or {}).get("code") for e in result.errors or []]
    if SERVICE_UNAVAILABLE in codes or DATABASE_UNAVAILABLE in codes:
        return 503
    if "PAYLOAD_TOO_LARGE" in codes and result.data is None:
        return 413
    if media_type != GRAPHQL_RESPONSE or result.data is not None or not codes:
        return 200
    if "UNAUTHENTICATED" in codes:
        return 401
    if all(c in REQUEST_ERROR_CODES for c in codes):
        return 400
    return 200


class GraphQLOverHTTP:
    """Mixin for Strawberry's ASGI `GraphQL` view (first in the bases of gql/app.py's view)."""

    limits: Limits = DEFAULT_LIMITS
    executor: BoundedExecutor
    allow_queries_via_get: bool

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await super().__call__(scope, receive, send)  # type: ignore[misc]
            return
        media_type = preferred_media_type(Request(scope).headers.get("accept", ""))
        try:
            response = await self.run(Request(scope, receive))  # type: ignore[attr-defined]
        except RequestRefused as e:
            response = error_response(e.status_code, e.reason, e.code, media_type)
        except HTTPException as e:  # Strawberry's own (missing query, unknown operation...)
            response = error_response(e.status_code, e.reason, "BAD_REQUEST", media_type)
        except Exception as e:
            failure = database_failure(e)
            if failure is None:
                raise
            # The token lookup in get_context is the request's first query, so an exhausted pool
            # or a database that does not answer surfaces here, before GraphQL runs.
            log.warning("database unavailable", extra={"error": type(e).__name__})
            code, message = failure
            response = error_response(503, message, code, media_type)
        await response(scope, receive, send)

    def decode_json(self, data: str | bytes) -> object:
        try:
            text = data.decode("utf-8") if isinstance(data, bytes) else data
        except UnicodeDecodeError:
            raise RequestRefused(400, "the request body is not valid UTF-8") from None
        try:
            value = json.loads(text)
        except RecursionError:
            raise RequestRefused(400, "the JSON body is nested too deeply") from None
        except json.JSONDecodeError:
            raise RequestRefused(400, "the request body is not valid JSON") from None
        if not isinstance(value, dict):
            raise RequestRefused(400, "the request body must be a JSON object")
        variables = value.get("variables")
        if _json_depth_exceeds(variables, self.limits.max_variables_depth):
            raise RequestRefused(
                400,
                f"variables are nested deeper than {self.limits.max_variables_depth} levels",
                BAD_USER_INPUT,
            )
        return value

    def authenticate(self, request: Any, context: Any) -> None:
        """Fills in the context's viewer (the view of gql/app.py looks the token up): called on
        the operation's thread, since the lookup may query the database."""

    async def execute_single(
        self,
        request: Any,
        request_adapter: Any,
        sub_response: Any,
        context: Any,
        root_value: Any,
        request_data: Any,
    ) -> ExecutionResult:
        """The whole operation, token lookup included, on the bounded executor's thread, with
        `execute_sync` (gql/core/executor.py says why); 503 when the executor is saturated."""
        allowed = OperationType.from_http(request_adapter.method)
        if not self.allow_queries_via_get and request_adapter.method == "GET":
            allowed = allowed - {OperationType.QUERY}

        def operation() -> ExecutionResult:
            self.authenticate(request, context)
            result: ExecutionResult = self.schema.execute_sync(  # type: ignore[attr-defined]
                request_data.query,
                root_value=root_value,
                variable_values=request_data.variables,
                context_value=context,
                operation_name=request_data.operation_name,
                allowed_operation_types=allowed,
                operation_extensions=request_data.extensions,
            )
            return result

        try:
            result = await self.executor.run(operation)
        except Saturated:
            log.warning("graphql executor saturated")
            raise RequestRefused(
                503,
                f"The server is busy; retry shortly (request id {request_id_var.get()}).",
                SERVICE_UNAVAILABLE,
            ) from None
        except CannotGetOperationTypeError as e:
            raise HTTPException(400, e.as_http_error_reason()) from e
        except InvalidOperationTypeError as e:
            raise HTTPException(400, e.as_http_error_reason(request_adapter.method)) from e
        except MissingQueryError as e:
            raise HTTPException(400, "No GraphQL query found in the request") from e
        # After the operation (its commits are done): the sync enqueues, off the loop.
        enqueue = getattr(context, "enqueue_sync", None)
        if isinstance(enqueue, DeferredEnqueue):
            await enqueue.flush()
        return result

    def encode_json(self, data: object) -> bytes:
        # orjson: several times faster than json.dumps on a 2,000-field answer; same bytes for
        # every value an answer holds (str, int, bool, None, lists, dicts).
        return orjson.dumps(data)

    async def get_sub_response(self, request: Any) -> Response:
        sub: Response = await super().get_sub_response(request)  # type: ignore[misc]
        request.state.graphql_sub_response = sub
        return sub

    async def process_result(self, request: Request, result: ExecutionResult) -> Any:
        for error in result.errors or []:
            # Parse errors escape Strawberry's extension hooks as exceptions, so ErrorCodes
            # never sees them; the syntax error class says what they are.
            if isinstance(error, GraphQLSyntaxError) and not (error.extensions or {}).get("code"):
                error.extensions = {**(error.extensions or {}), "code": PARSE_FAILED}
        body: GraphQLHTTPResponse = await super().process_result(request, result)  # type: ignore[misc]
        media_type = preferred_media_type(request.headers.get("accept", ""))
        status = status_for(result, media_type)
        if media_type == GRAPHQL_RESPONSE and status >= 400:
            body.pop("data", None)  # nothing was executed: the spec says no `data` at all
        sub: Response = request.state.graphql_sub_response
        sub.status_code = status
        sub.media_type = media_type
        if status == 503:
            sub.headers["Retry-After"] = "1"
        return body

    def create_response(self, response_data: Any, sub_response: Response) -> Response:
        response: Response = super().create_response(response_data, sub_response)  # type: ignore[misc]
        media_type = getattr(sub_response, "media_type", None) or JSON
        response.headers["content-type"] = f"{media_type}; charset=utf-8"
        return response


class RequestBodyLimit:
    """Pure ASGI middleware: refuses a body past `max_bytes` with 413 while it is read.

    A Content-Length past the limit is refused before a byte is read; a chunked body is counted
    chunk by chunk and refused as soon as it passes. The accepted body is handed on in one
    piece (Strawberry reads it whole anyway), so memory stays bounded by the limit."""

    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_LIMITS.max_body_bytes) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        media_type = preferred_media_type(request.headers.get("accept", ""))
        too_large = error_response(
            413,
            f"the request body is larger than {self.max_bytes} bytes",
            "PAYLOAD_TOO_LARGE",
            media_type,
        )
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            await too_large(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await too_large(scope, receive, send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)
