"""A small HTTP/1.1 server for the admin, stats and readiness planes (not the data path).

Each request is read whole (bodies are small and capped), handed to an async handler, and
answered with ``Connection: close``: scrapes and probes open a connection per request anyway.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from http import HTTPStatus

import httptools

log = logging.getLogger("agentgateway.admin")

_MAX_BODY = 1024 * 1024


class AdminRequest:
    __slots__ = ("method", "path", "query", "headers", "body")

    def __init__(self, method: str, path: str, query: str, headers: dict[str, str], body: bytes) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body


class AdminResponse:
    __slots__ = ("status", "body", "content_type", "headers")

    def __init__(
        self,
        status: int,
        body: bytes | str,
        content_type: str = "text/plain; charset=utf-8",
        headers: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.status = status
        self.body = body.encode() if isinstance(body, str) else body
        self.content_type = content_type
        self.headers = headers


Handler = Callable[[AdminRequest], Awaitable[AdminResponse]]


class _AdminProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.url = b""
        self.headers: dict[str, str] = {}
        self.body = bytearray()
        self.task: asyncio.Task[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop transports are not asyncio.Transport subclasses

    def data_received(self, data: bytes) -> None:
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self._write(AdminResponse(400, "malformed request\n"))

    def connection_lost(self, exc: Exception | None) -> None:
        if self.task is not None:
            self.task.cancel()

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_body(self, body: bytes) -> None:
        self.body += body
        if len(self.body) > _MAX_BODY:
            raise ValueError("body too large")

    def on_message_complete(self) -> None:
        url = httptools.parse_url(self.url)
        request = AdminRequest(
            self.parser.get_method().decode(),
            (url.path or b"/").decode("latin-1"),
            (url.query or b"").decode("latin-1"),
            self.headers,
            bytes(self.body),
        )
        self.transport.pause_reading()  # type: ignore[union-attr]
        self.task = asyncio.get_running_loop().create_task(self._handle(request))

    async def _handle(self, request: AdminRequest) -> None:
        try:
            response = await self.handler(request)
        except Exception as exc:  # an admin bug must not take the plane down
            log.exception("admin handler failed")
            response = AdminResponse(500, f"internal error: {exc}\n")
        self._write(response, head_only=request.method == "HEAD")

    def _write(self, response: AdminResponse, head_only: bool = False) -> None:
        if self.transport is None or self.transport.is_closing():
            return
        try:
            phrase = HTTPStatus(response.status).phrase
        except ValueError:
            phrase = "Unknown"
        lines = [
            f"HTTP/1.1 {response.status} {phrase}",
            f"content-type: {response.content_type}",
            f"content-length: {len(response.body)}",
            "connection: close",
            *(f"{k}: {v}" for k, v in response.headers),
        ]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        self.transport.write(head if head_only else head + response.body)
        self.transport.close()


async def serve_admin(host: str, port: int, handler: Handler) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(lambda: _AdminProtocol(handler), host, port, reuse_address=True)
