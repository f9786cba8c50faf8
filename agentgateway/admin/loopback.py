"""HTTP/1.1 requests from the admin plane to the gateway's own listeners on 127.0.0.1 (the UI's
playgrounds), with the response body streamed back as it arrives.

Small on purpose: one request per connection (``Connection: close``), the body sent with a
``Content-Length``, the response parsed by httptools (chunked bodies decoded). The caller decides
the port and the path from the running config; nothing here takes an address from a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncIterator

import httptools

# A playground call may stream (an LLM answer, an A2A task, MCP progress) but not forever.
STREAM_LIMIT_SECONDS = 300.0
HEAD_TIMEOUT = 120.0
MAX_HEAD_BYTES = 64 * 1024


class LoopbackError(Exception):
    """The gateway's listener could not be reached or answered garbage."""


class LoopbackResponse:
    """Status and headers of the listener's answer; ``body()`` yields the body as it arrives and
    closes the connection when done (or when the consumer stops early)."""

    def __init__(
        self,
        status: int,
        headers: list[tuple[str, str]],
        chunks: asyncio.Queue[bytes | None],
        writer: asyncio.StreamWriter,
        reader_task: asyncio.Task[None],
    ) -> None:
        self.status = status
        self.headers = headers
        self._chunks = chunks
        self._writer = writer
        self._reader_task = reader_task

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    async def body(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STREAM_LIMIT_SECONDS
        try:
            while True:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    return
                try:
                    chunk = await asyncio.wait_for(self._chunks.get(), remaining)
                except TimeoutError:
                    return
                if chunk is None:
                    return
                yield chunk
        finally:
            await self.close()

    async def read_all(self, limit: int) -> bytes:
        out = bytearray()
        async for chunk in self.body():
            out += chunk
            if len(out) > limit:
                raise LoopbackError(f"the answer is larger than {limit} bytes")
        return bytes(out)

    async def close(self) -> None:
        self._reader_task.cancel()
        self._writer.close()
        with contextlib.suppress(OSError, asyncio.CancelledError):
            await self._writer.wait_closed()


class _Parser:
    """httptools callbacks: the head into attributes, body chunks into ``pending`` (moved to the
    bounded queue by the reader, which waits while the queue is full: back-pressure)."""

    def __init__(self) -> None:
        self.pending: list[bytes] = []
        self.headers: list[tuple[str, str]] = []
        self.head_done = asyncio.Event()
        self.head_size = 0
        self.head_complete = False
        self.done = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.head_size += len(name) + len(value)
        if self.head_size > MAX_HEAD_BYTES:
            raise LoopbackError("response head too large")
        self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        self.head_complete = True
        self.head_done.set()

    def on_body(self, body: bytes) -> None:
        self.pending.append(bytes(body))

    def on_message_complete(self) -> None:
        self.done = True


async def request(
    port: int,
    method: str,
    target: str,
    headers: list[tuple[str, str]],
    body: bytes,
    tls_server_name: str | None = None,
) -> LoopbackResponse:
    """Send one request to 127.0.0.1:``port`` and return once the response head is in.

    ``tls_server_name``: the listener is HTTPS; the connection is encrypted with that SNI but the
    certificate is not verified (the listener is this gateway's own, on loopback)."""
    context: ssl.SSLContext | None = None
    if tls_server_name is not None:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    try:
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(
                "127.0.0.1", port, ssl=context, server_hostname=tls_server_name if context else None
            ),
            10.0,
        )
    except (OSError, TimeoutError) as exc:
        raise LoopbackError(f"cannot connect to the gateway's port {port}: {exc}") from None
    lines = [f"{method} {target} HTTP/1.1"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [f"content-length: {len(body)}", "connection: close"]
    writer.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
    # A few chunks in flight at most: a page that reads slowly slows the route's answer down
    # instead of filling the supervisor's memory.
    chunks: asyncio.Queue[bytes | None] = asyncio.Queue(maxsize=8)
    callbacks = _Parser()
    parser = httptools.HttpResponseParser(callbacks)

    async def read() -> None:
        try:
            while not callbacks.done:
                data = await reader.read(65536)
                if not data:
                    break  # a close-delimited body ends here
                try:
                    parser.feed_data(data)
                finally:
                    for chunk in callbacks.pending:
                        await chunks.put(chunk)
                    callbacks.pending.clear()
        except (httptools.HttpParserError, LoopbackError, OSError):
            pass
        finally:
            callbacks.head_done.set()
        await chunks.put(None)

    task = asyncio.get_running_loop().create_task(read())
    try:
        await asyncio.wait_for(callbacks.head_done.wait(), HEAD_TIMEOUT)
    except TimeoutError:
        task.cancel()
        writer.close()
        raise LoopbackError(f"no answer from the gateway's port {port} within {HEAD_TIMEOUT:g}s") from None
    if not callbacks.head_complete:
        task.cancel()
        writer.close()
        raise LoopbackError(f"the gateway's port {port} closed the connection without a valid answer")
    return LoopbackResponse(parser.get_status_code(), callbacks.headers, chunks, writer, task)
