"""Losing a response: the request executed, and the client gets no answer at all.

ASGI has no "abort" message, and uvicorn (0.54, `protocols/http/*_impl.py` `run_asgi`) turns
every ASGI-level way out into an answer: an app that raises before `http.response.start`, or
returns without starting a response, gets a 500 written for it. Only a response that was
started and then broken makes it close the socket, and by then the status line is out. So the
connection is not dropped at the ASGI level but one layer below, by a plain asyncio TCP front
that owns the client's socket:

    client ──TCP──▶ Front (public port) ──TCP, loopback──▶ uvicorn + the Starlette app

The front copies bytes both ways and understands nothing of HTTP. Each client connection has
its own upstream connection, and uvicorn reports that upstream socket's address as
`scope["client"]`; by that address an endpoint asks `Connections.drop` to abort the client's
socket (no byte of the answer is written, the client reports "connection closed without
response": requests' ConnectionError, httpx's RemoteProtocolError, the Stripe SDK's
APIConnectionError for both) and to close the upstream one, which uvicorn sees as the ASGI
`http.disconnect` the endpoint then waits for, so uvicorn writes no 500 and logs nothing.

The front and uvicorn share one event loop (`server.MockServer`), so `drop` runs on the loop
that owns the transports. Served any other way (no front attached, e.g. `create_app()` under a
bare uvicorn), the endpoint falls back to the one path ASGI servers answer by closing the
socket: start a response that announces a body, then fail; the client then sees a status line
and a broken body, still a connection error to the SDK.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from starlette.types import Receive, Scope, Send

_CHUNK = 64 * 1024
# Bounds the wait for uvicorn to notice the closed upstream socket; it takes one loop turn.
_DISCONNECT_WAIT_SECONDS = 2.0

Address = tuple[str, int]


class ConnectionDropped(Exception):
    """Raised after a partial response when no front owns the client's socket."""


@dataclass
class _Link:
    client: asyncio.StreamWriter
    upstream: asyncio.StreamWriter


class Connections:
    """The front's open client connections, by the address uvicorn sees them from."""

    def __init__(self) -> None:
        self.front_attached = False
        self._links: dict[Address, _Link] = {}

    def drop(self, upstream_address: object) -> None:
        """Abort the client's socket without a byte more; a client already gone is a no-op."""
        link = self._links.pop(_address(upstream_address), None)
        if link is not None:
            link.client.transport.abort()
            link.upstream.close()

    def abort_all(self) -> None:
        for address in list(self._links):
            self.drop(address)

    async def relay(
        self, client_reader: asyncio.StreamReader, client: asyncio.StreamWriter, upstream: Address
    ) -> None:
        """`asyncio.start_server` callback: pipe one client connection to uvicorn and back."""
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(*upstream)
        except OSError:
            client.transport.abort()
            return
        address = _address(upstream_writer.get_extra_info("sockname"))
        self._links[address] = _Link(client, upstream_writer)
        try:
            await asyncio.gather(
                _pump(client_reader, upstream_writer), _pump(upstream_reader, client)
            )
        finally:
            self._links.pop(address, None)


async def _pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
    # Either side ending ends the connection: HTTP clients never half-close mid-request.
    try:
        while data := await source.read(_CHUNK):
            if sink.is_closing():
                break
            sink.write(data)
            await sink.drain()
    except OSError:
        pass
    finally:
        sink.close()


def _address(value: object) -> Address:
    if isinstance(value, list | tuple) and len(value) >= 2:
        return str(value[0]), int(value[1])
    return "", 0


async def drop_connection(
    connections: Connections, scope: Scope, receive: Receive, send: Send
) -> None:
    """End the request with no answer; see the module docstring for how."""
    if not connections.front_attached:
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
    connections.drop(scope.get("client"))
    try:
        async with asyncio.timeout(_DISCONNECT_WAIT_SECONDS):
            while (await receive())["type"] != "http.disconnect":
                pass
    except TimeoutError:
        pass
