"""Proxying one request to an HTTP upstream and its response back, streaming both ways.

``HttpForward`` is the exchange for routes with HTTP backends. Bytes flow through callbacks,
never through a queue: request body chunks are written to the upstream as they arrive and
response chunks to the client as they arrive. Back-pressure is passed across: a slow client
pauses reading from the upstream, a slow upstream pauses reading from the client.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from agentgateway.server.http1 import PAUSE_BODY_BUFFER, PAUSE_UPSTREAM
from agentgateway.upstream.pool import UpstreamConnectError
from agentgateway.upstream.target import HttpTarget

if TYPE_CHECKING:
    from agentgateway.server.context import RequestCtx
    from agentgateway.server.http1 import HttpConnection
    from agentgateway.server.worker import Worker
    from agentgateway.upstream.http1 import Headers, UpstreamConnection

# Hop-by-hop headers (RFC 9110 §7.6.1) are never forwarded; framing headers are re-made.
_HOP_BY_HOP = frozenset(
    (
        b"connection",
        b"keep-alive",
        b"proxy-connection",
        b"te",
        b"trailer",
        b"transfer-encoding",
        b"upgrade",
        b"proxy-authenticate",
        b"proxy-authorization",
    )
)
# Request headers the gateway writes itself.
_REQUEST_REWRITTEN = _HOP_BY_HOP | {b"host", b"expect", b"x-forwarded-for", b"x-forwarded-proto"}
_RESPONSE_REWRITTEN = _HOP_BY_HOP | {b"content-length"}

# Connection header values that name no other header (the common case, checked cheaply).
_PLAIN_CONNECTION = frozenset((b"keep-alive", b"close", b"Keep-Alive", b"Close", b"upgrade", b"Upgrade"))

_LAST_CHUNK = b"0\r\n\r\n"
# Body bytes kept to replay a request when a pooled connection turns out to be dead, and body
# bytes buffered while the upstream connection is being made.
_REPLAY_LIMIT = 64 * 1024
_PENDING_LIMIT = 256 * 1024


def _connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Header names a client lists in ``Connection`` (they are hop-by-hop too)."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    tokens.discard(b"close")
    tokens.discard(b"keep-alive")
    return frozenset(tokens)


def build_request_head(request: RequestCtx, chunked: bool, listed: frozenset[bytes] = frozenset()) -> bytes:
    """Request line and headers for the upstream, in one buffer. Headers named in the client's
    ``Connection`` header are hop-by-hop too; finding one (rare) restarts with them filtered."""
    headers = request.headers
    parts = [request.method, b" ", request.target, b" HTTP/1.1\r\nhost: ", request.host, b"\r\n"]
    forwarded_for = request.client_ip.encode()
    for name, value in headers:
        if name in _REQUEST_REWRITTEN:
            if name == b"x-forwarded-for":
                forwarded_for = value + b", " + forwarded_for
            elif name == b"connection" and not listed and value not in _PLAIN_CONNECTION:
                tokens = _connection_tokens(headers)
                if tokens:
                    return build_request_head(request, chunked, tokens)
            continue
        if listed and name in listed:
            continue
        parts += (name, b": ", value, b"\r\n")
    parts += (b"x-forwarded-for: ", forwarded_for, b"\r\nx-forwarded-proto: ", request.scheme, b"\r\n")
    if chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def response_fields(headers: Headers) -> tuple[bytes, int | None]:
    """The upstream's headers to relay to the client, serialized, and the body length if the
    upstream declared one. Hop-by-hop and framing headers are left out (the client connection
    adds its own framing)."""
    parts: list[bytes] = []
    content_length: int | None = None
    chunked = False
    listed: frozenset[bytes] | None = None
    for name, value in headers:
        if name in _RESPONSE_REWRITTEN:
            if name == b"content-length":
                try:
                    content_length = int(value)
                except ValueError:
                    content_length = None
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection" and value not in _PLAIN_CONNECTION:
                listed = _connection_tokens(headers)
            continue
        parts += (name, b": ", value, b"\r\n")
    if listed:
        parts = []
        for name, value in headers:
            if name not in _RESPONSE_REWRITTEN and name not in listed:
                parts += (name, b": ", value, b"\r\n")
    return b"".join(parts), (None if chunked else content_length)


class HttpForward:
    __slots__ = (
        "worker",
        "conn",
        "ctx",
        "target",
        "upstream",
        "_head",
        "_chunked",
        "_no_body",
        "_pending",
        "_pending_bytes",
        "_out",
        "_replay",
        "_replay_bytes",
        "_request_done",
        "_response_started",
        "_finished",
        "_retried",
        "_connect_task",
    )

    def __init__(self, worker: Worker, conn: HttpConnection, ctx: RequestCtx, target: HttpTarget) -> None:
        self.worker = worker
        self.conn = conn
        self.ctx = ctx
        self.target = target
        self.upstream: UpstreamConnection | None = None
        self._chunked = ctx.chunked
        self._no_body = ctx.method == b"HEAD"
        self._head = build_request_head(ctx, ctx.chunked)
        self._pending: list[bytes] = []
        self._pending_bytes = 0
        # Bytes for the upstream produced while handling one client read, written at its end.
        self._out: list[bytes] = []
        self._replay: list[bytes] | None = [] if ctx.has_body else None
        self._replay_bytes = 0
        self._request_done = False
        self._response_started = False
        self._finished = False
        self._retried = False
        self._connect_task: asyncio.Task[None] | None = None

    def start(self) -> None:
        upstream = self.worker.pool.take(self.target)
        if upstream is not None:
            self._attach(upstream, flush=False)  # flushed at the end of the client read
        else:
            self._connect()
        if self.ctx.expect_continue:
            self.conn.send_continue()

    # ------------------------------------------------------------------ upstream connection

    def _connect(self) -> None:
        self._connect_task = self.worker.loop.create_task(self._connect_and_attach())

    async def _connect_and_attach(self) -> None:
        try:
            upstream = await self.worker.pool.connect(self.target)
        except UpstreamConnectError as exc:
            self._connect_task = None
            if not self._finished:
                self._fail(503, exc.message)
            return
        self._connect_task = None
        if self._finished:
            self.worker.pool.release(upstream)
            return
        self._attach(upstream, flush=True)

    def _attach(self, upstream: UpstreamConnection, flush: bool) -> None:
        self.upstream = upstream
        upstream.begin(self, self._no_body)
        self._out.append(self._head)
        if self._pending:
            self._out += self._pending
            self._pending = []
            self._pending_bytes = 0
            self.conn.resume_request_body(PAUSE_BODY_BUFFER)
        if flush:
            self.client_data_done()
        if self.conn.write_paused:
            upstream.pause_reading()

    # ------------------------------------------------------------------ request body (Exchange)

    def request_body(self, chunk: bytes) -> None:
        self.ctx.request_bytes += len(chunk)
        replay = self._replay
        if replay is not None:
            self._replay_bytes += len(chunk)
            if self._replay_bytes <= _REPLAY_LIMIT:
                replay.append(chunk)
            else:
                self._replay = None
        data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if self._chunked else chunk
        self._send(data)

    def request_end(self) -> None:
        self._request_done = True
        if self._chunked:
            self._send(_LAST_CHUNK)
        self.client_data_done()

    def _send(self, data: bytes) -> None:
        if self.upstream is not None:
            self._out.append(data)
        elif not self._finished:
            self._pending.append(data)
            self._pending_bytes += len(data)
            if self._pending_bytes > _PENDING_LIMIT:
                self.conn.pause_request_body(PAUSE_BODY_BUFFER)

    # ------------------------------------------------------------------ client events (Exchange)

    def client_write_paused(self) -> None:
        if self.upstream is not None:
            self.upstream.pause_reading()

    def client_write_resumed(self) -> None:
        if self.upstream is not None:
            self.upstream.resume_reading()

    def client_data_done(self) -> None:
        out = self._out
        if out:
            upstream = self.upstream
            if upstream is not None:
                upstream.write(out[0] if len(out) == 1 else b"".join(out))
            self._out = []

    def client_lost(self) -> None:
        self._finished = True
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.abort()

    # ------------------------------------------------------------------ response (UpstreamSink)

    def upstream_head(self, status: int, headers: Headers) -> None:
        self._response_started = True
        fields, content_length = response_fields(headers)
        self.conn.send_head_fields(status, fields, content_length, True)

    def upstream_body(self, chunk: bytes) -> None:
        self.conn.send_body(chunk)

    def upstream_data_done(self) -> None:
        self.conn.flush()

    def upstream_end(self, keep_alive: bool) -> None:
        upstream = self.upstream
        self.upstream = None
        self._finished = True
        if upstream is not None:
            if keep_alive and self._request_done:
                self.worker.pool.release(upstream)
            else:
                upstream.close()
        self.conn.end_response()

    def upstream_failed(self, status: int, message: str) -> None:
        upstream = self.upstream
        self.upstream = None
        if self._finished:
            return
        if self._response_started:
            self._finished = True
            self.ctx.error = message
            self.conn.abort()
            return
        if (
            upstream is not None
            and upstream.reused
            and not upstream.received
            and not self._retried
            and (self._replay is not None or not self.ctx.has_body)
        ):
            # A pooled connection the upstream had closed: nothing was processed, send again
            # on a fresh connection.
            self._retried = True
            self._out = []
            self._pending = [b"%x\r\n%b\r\n" % (len(c), c) if self._chunked else c for c in self._replay or ()]
            if self._request_done and self._chunked:
                self._pending.append(_LAST_CHUNK)
            self._pending_bytes = sum(len(p) for p in self._pending)
            self._connect()
            return
        self._fail(status, message)

    def upstream_write_paused(self) -> None:
        self.conn.pause_request_body(PAUSE_UPSTREAM)

    def upstream_write_resumed(self) -> None:
        self.conn.resume_request_body(PAUSE_UPSTREAM)

    def _fail(self, status: int, message: str) -> None:
        self._finished = True
        self.ctx.error = message
        self.conn.reply(self.ctx, status, message)
