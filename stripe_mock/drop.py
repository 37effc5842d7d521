"""Dropping a connection without an HTTP answer, so clients see a network error.

ASGI has no "abort" message. Under uvicorn the `send` callable is a bound method of the
request cycle, which holds the asyncio transport; aborting that transport closes the socket
before a single response byte is written, and the client reports "connection closed without
response" (requests: ConnectionError, httpx: RemoteProtocolError; the Stripe SDK raises
APIConnectionError for both). `MockStripe.__call__` keeps uvicorn's own `send` and `receive`
in the scope because Starlette's middleware wraps them. Any other server gets the fallback:
start a response announcing a body, then fail, which servers answer by closing the socket
mid-response.
"""

from __future__ import annotations

import asyncio
from typing import Any, Protocol, runtime_checkable

from starlette.types import Receive, Scope, Send

SERVER_SEND = "stripe_mock.server_send"
SERVER_RECEIVE = "stripe_mock.server_receive"
# Bounds the wait for the server to notice the closed socket; it takes one loop iteration.
_DISCONNECT_WAIT_SECONDS = 2.0


class ConnectionDropped(Exception):
    """Raised after a partial response when the transport cannot be aborted directly."""


@runtime_checkable
class _Abortable(Protocol):
    def abort(self) -> None: ...


def _transport(send: Any) -> _Abortable | None:
    # Duck-typed: uvloop's TCPTransport does not derive from asyncio.WriteTransport.
    transport = getattr(getattr(send, "__self__", None), "transport", None)
    return transport if isinstance(transport, _Abortable) else None


async def drop_connection(scope: Scope, receive: Receive, send: Send) -> None:
    server_send = scope.get(SERVER_SEND, send)
    server_receive: Receive = scope.get(SERVER_RECEIVE, receive)
    transport = _transport(server_send)
    if transport is None:
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [
                    (b"content-length", b"1048576"),
                    (b"content-type", b"application/json"),
                ],
            }
        )
        raise ConnectionDropped("stripe_mock dropped the connection on purpose")
    transport.abort()
    # Returning before uvicorn has seen the disconnect would make it answer 500 on a closed
    # socket and log "returned without starting response"; its receive() reports the
    # disconnect once the transport's connection_lost has run.
    try:
        async with asyncio.timeout(_DISCONNECT_WAIT_SECONDS):
            while (await server_receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass
