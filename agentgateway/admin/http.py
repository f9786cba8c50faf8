"""A small HTTP/1.1 server for the admin, stats and readiness planes (not the data path).

One request per connection, answered with ``Connection: close`` (scrapes and probes open a
connection per request anyway). Every request's head first passes the plane's door
(``admin/door.py``), before its body is read and before any handler sees it. The server is small
but not naive: the head is capped (bytes and header count, 431), the body too (413), a client
has ``REQUEST_TIMEOUT`` seconds to send its whole request (no slow-loris), and at most
``MAX_CONNECTIONS`` connections are open at once (more are closed at accept).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from http import HTTPStatus
from typing import TYPE_CHECKING

import httptools

if TYPE_CHECKING:
    from agentgateway.admin.door import Door

log = logging.getLogger("agentgateway.admin")

MAX_HEAD_BYTES = 32 * 1024
MAX_HEADERS = 64
MAX_BODY = 1024 * 1024
REQUEST_TIMEOUT = 5.0
MAX_CONNECTIONS = 64


class RequestHead:
    """Method, path and headers of a request (names lowercased, every occurrence kept)."""

    __slots__ = ("method", "url", "header_list")

    def __init__(self, method: str, url: bytes, header_list: list[tuple[str, str]]) -> None:
        self.method = method
        self.url = url
        self.header_list = header_list

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.header_list if k == name]


class AdminRequest:
    __slots__ = ("method", "path", "query", "headers", "body", "header_list")

    def __init__(
        self,
        method: str,
        path: str,
        query: str,
        headers: dict[str, str],
        body: bytes,
        header_list: list[tuple[str, str]] | None = None,
    ) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        # Every occurrence of every header (``headers`` keeps the last one of a name).
        self.header_list = header_list if header_list is not None else list(headers.items())

    def values(self, name: str) -> list[str]:
        return [v for k, v in self.header_list if k == name]


class AdminResponse:
    """An answer: ``body`` whole, or ``stream`` (then the body is what the iterator yields, sent as
    it comes and delimited by the connection's close; the UI's playgrounds relay streams)."""

    __slots__ = ("status", "body", "content_type", "headers", "stream")

    def __init__(
        self,
        status: int,
        body: bytes | str,
        content_type: str = "text/plain; charset=utf-8",
        headers: tuple[tuple[str, str], ...] = (),
        stream: AsyncIterator[bytes] | None = None,
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = headers
        self.stream = stream


Handler = Callable[[AdminRequest], Awaitable[AdminResponse]]


class _Plane:
    """What the connections of one plane share: its handler, its door and the open count."""

    __slots__ = ("handler", "door", "open")

    def __init__(self, handler: Handler, door: Door) -> None:
        self.handler = handler
        self.door = door
        self.open = 0


class _AdminProtocol(asyncio.Protocol):
    def __init__(self, plane: _Plane) -> None:
        self.plane = plane
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.header_list: list[tuple[str, str]] = []
        self.head_bytes = 0  # received before the head was complete (bounds what the parser buffers)
        self.head_size = 0  # of the head itself: URL and headers
        self.head_done = False
        self.body = bytearray()
        self.answered = False  # one request per connection: anything after it is ignored
        self.task: asyncio.Task[None] | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.counted = False
        self.writable = asyncio.Event()  # cleared while the transport's write buffer is full
        self.writable.set()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop transports are not asyncio.Transport subclasses
        if self.plane.open >= MAX_CONNECTIONS:
            transport.close()
            return
        self.plane.open += 1
        self.counted = True
        self.timer = asyncio.get_running_loop().call_later(REQUEST_TIMEOUT, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if self.answered or self.task is not None:
            return  # one request per connection: what follows it is not read
        if not self.head_done:
            self.head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # also a callback's _Stop, wrapped
            if self.answered or self.task is not None:
                return  # answered, or the whole request is in (an Upgrade header is ignored)
            self._write(AdminResponse(400, "malformed request\n"))
        if not self.head_done and self.head_bytes > MAX_HEAD_BYTES and not self.answered:
            self._write(AdminResponse(431, "request head too large\n"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.plane.open -= 1
            self.counted = False
        if self.timer is not None:
            self.timer.cancel()
        if self.task is not None:
            self.task.cancel()

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def _timed_out(self) -> None:
        if not self.answered:
            self._write(AdminResponse(408, "request not received in time\n"))

    # ------------------------------------------------------------------ parser callbacks

    def on_url(self, url: bytes) -> None:
        self.url += url
        self.head_size += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value) + 4
        if len(self.header_list) >= MAX_HEADERS or self.head_size > MAX_HEAD_BYTES:
            self._write(AdminResponse(431, "request head too large (bytes or header count)\n"))
            raise _Stop
        self.header_list.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_done = True
        head = RequestHead(self.parser.get_method().decode("latin-1"), self.url, self.header_list)
        refusal = self.plane.door.refuse(head)
        if refusal is not None:
            self._write(refusal)
            raise _Stop

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > MAX_BODY:
            self._write(AdminResponse(413, "request body too large\n"))
            raise _Stop

    def on_message_complete(self) -> None:
        if self.answered or self.task is not None:
            return
        if self.timer is not None:
            self.timer.cancel()
        url = httptools.parse_url(self.url)
        request = AdminRequest(
            self.parser.get_method().decode("latin-1"),
            (url.path or b"/").decode("latin-1"),
            (url.query or b"").decode("latin-1"),
            dict(self.header_list),
            bytes(self.body),
            self.header_list,
        )
        assert self.transport is not None
        self.transport.pause_reading()
        self.task = asyncio.get_running_loop().create_task(self._handle(request))
        raise _Stop

    async def _handle(self, request: AdminRequest) -> None:
        try:
            response = await self.plane.handler(request)
        except Exception as exc:  # an admin bug must not take the plane down
            log.exception("admin handler failed")
            response = AdminResponse(500, f"internal error: {type(exc).__name__}\n")
        if response.stream is not None and request.method != "HEAD":
            await self._write_stream(response, response.stream)
            return
        self._write(response, head_only=request.method == "HEAD")

    async def _write_stream(self, response: AdminResponse, stream: AsyncIterator[bytes]) -> None:
        """The head, then each chunk as the stream yields it (waiting while the client is slow),
        then the close that ends the body."""
        self.answered = True
        transport = self.transport
        try:
            if transport is None or transport.is_closing():
                return
            transport.write(self._head(response, None))
            async for chunk in stream:
                if transport.is_closing():
                    return
                if chunk:
                    transport.write(chunk)
                await self.writable.wait()
        except Exception:  # the source failed mid-stream: cut the body (never a wrong one)
            log.exception("admin stream failed")
        finally:
            closer = getattr(stream, "aclose", None)
            if closer is not None:
                await closer()
            if transport is not None:
                transport.close()

    def _write(self, response: AdminResponse, head_only: bool = False) -> None:
        self.answered = True
        if self.transport is None or self.transport.is_closing():
            return
        head = self._head(response, len(response.body))
        self.transport.write(head if head_only else head + response.body)
        self.transport.close()

    @staticmethod
    def _head(response: AdminResponse, length: int | None) -> bytes:
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [
            f"HTTP/1.1 {response.status} {phrase}",
            f"content-type: {response.content_type}",
            *([f"content-length: {length}"] if length is not None else []),
            "connection: close",
            "cache-control: no-store",
            "x-content-type-options: nosniff",
            *(f"{k}: {v}" for k, v in response.headers),
        ]
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Stop(Exception):
    """Raised from a parser callback that has answered, or has the whole request: stops the parser
    (bytes after the request, such as a pipelined second one, are not parsed)."""


async def serve_admin(host: str, port: int, handler: Handler, door: Door) -> asyncio.Server:
    """Serve one plane: every request passes ``door`` before ``handler`` sees it."""
    loop = asyncio.get_running_loop()
    plane = _Plane(handler, door)
    return await loop.create_server(lambda: _AdminProtocol(plane), host, port, reuse_address=True)
