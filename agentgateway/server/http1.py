"""HTTP/1.1 server side of a client connection: httptools parsing, pipelining, framing, limits.

One ``HttpConnection`` per accepted socket. It parses request heads, hands each request to an
*exchange* (the thing that serves it: an upstream proxy call or a local reply), and frames what
the exchange sends back. Pipelined requests are queued with their bodies and answered in order.
Reading is paused while requests are queued or while the upstream cannot take more body bytes;
writing back-pressure is forwarded to the exchange, which pauses its upstream.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Iterable
from http import HTTPStatus
from typing import TYPE_CHECKING, cast

import httptools

from agentgateway.core.context import RequestCtx
from agentgateway.core.exchange import DISCARD, PAUSE_PIPELINE, PAUSE_UPSTREAM, Exchange
from agentgateway.core.request import Headers, PathError, split_target
from agentgateway.proxy.tunnel import Tunnel
from agentgateway.server.forwarded import FORWARDED_HEADERS, is_trusted
from agentgateway.server.head import (
    PLAIN_CONNECTION,
    apply_forwarded,
    body_stall,
    valid_host,
    without_connection_options,
)

if TYPE_CHECKING:
    from agentgateway.server.host import ConnectionHost, ServedBind

STATUS_LINES: dict[int, bytes] = {s.value: f"HTTP/1.1 {s.value} {s.phrase}\r\n".encode() for s in HTTPStatus}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_LAST_CHUNK = b"0\r\n\r\n"
_CRLF = b"\r\n"
_CLOSE_END = b"connection: close\r\n\r\n"
_KEEP_ALIVE_END = b"connection: keep-alive\r\n\r\n"
_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")

# Framing of the response body towards the client.
_BODY_NONE, _BODY_LENGTH, _BODY_CHUNKED, _BODY_CLOSE = 0, 1, 2, 3

# Deadline kinds checked by the worker's sweep: the request head, an idle keep-alive connection,
# the request body (its pauses and its average rate, see ``_check_body``), and a connection that
# switched protocols (its tunnel's idle time).
DEADLINE_HEADER, DEADLINE_IDLE, DEADLINE_BODY, DEADLINE_TUNNEL = 1, 2, 3, 4

# Reading paused while the backend decides on an upgrade (beside core.exchange's reasons): what the
# client sends after the head belongs to the new protocol, or to the next request if refused.
_PAUSE_UPGRADE = 8
# Upgrade tokens served as plain HTTP: h2c is HTTP/2's own upgrade, not a protocol to relay.
_NOT_RELAYED = frozenset((b"h2c",))

# The request headers ``on_headers_complete`` reads (every other one costs a lookup and no more).
_HOST, _CONTENT_LENGTH, _TRANSFER_ENCODING, _CONNECTION, _EXPECT, _FORWARDED = range(1, 7)
_HEAD_FIELDS = {
    b"host": _HOST,
    b"content-length": _CONTENT_LENGTH,
    b"transfer-encoding": _TRANSFER_ENCODING,
    b"connection": _CONNECTION,
    b"expect": _EXPECT,
    **dict.fromkeys(FORWARDED_HEADERS, _FORWARDED),
}

_WRITE_HIGH_WATER = 256 * 1024
_WRITE_LOW_WATER = 64 * 1024


def status_line(status: int) -> bytes:
    line = STATUS_LINES.get(status)
    return line if line is not None else b"HTTP/1.1 %d Unknown\r\n" % status


class _Queued:
    """A pipelined request waiting for the one before it to be answered."""

    __slots__ = ("ctx", "body", "done")

    def __init__(self, ctx: RequestCtx) -> None:
        self.ctx = ctx
        self.body: list[bytes] = []
        self.done = False


class _Rejected(Exception):
    """Raised inside a parser callback to stop parsing and answer with ``status``."""

    def __init__(self, status: int, message: str, ctx: RequestCtx | None = None) -> None:
        self.status = status
        self.message = message
        self.ctx = ctx


class HttpConnection(asyncio.Protocol):
    __slots__ = (
        "worker",
        "bind",
        "opened",
        "transport",
        "parser",
        "client_ip",
        "client_port",
        "scheme",
        "sni",
        "client_cert",
        "_parsing_head",
        "_url",
        "_headers",
        "_head_bytes",
        "_limits",
        "_ctx",
        "_exchange",
        "_body_sink",
        "_queue",
        "_request_done",
        "_response_done",
        "_response_started",
        "_framing",
        "_close_after",
        "_pause_mask",
        "write_paused",
        "_body_bytes",
        "_body_seen",
        "_body_idle",
        "_body_elapsed",
        "_body_checked",
        "_host_ok",
        "_trust_limits",
        "_trusted",
        "_out",
        "deadline",
        "deadline_kind",
        "response_deadline",
        "closed",
        "_held",
        "_tunnel",
    )

    def __init__(self, worker: ConnectionHost, bind: ServedBind) -> None:
        self.worker = worker
        self.bind = bind
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpRequestParser(self)
        self.client_ip = ""
        self.client_port = 0
        self.scheme = b"http"
        # For TLS connections: the server name the client asked for (picks the listener).
        self.sni: bytes | None = None
        # The TLS client presented a certificate (verified by the listener's handshake, or by the
        # one that made a session it resumed).
        self.client_cert = False
        self._parsing_head = False
        self._url = b""
        self._headers: Headers = []
        self._head_bytes = 0
        self._limits = worker.runtime.limits  # refreshed per request: reloads may change them
        self._ctx: RequestCtx | None = None  # the request being answered
        self._exchange: Exchange | None = None
        # Where body bytes of the request being *parsed* go: the exchange, or a queue entry.
        self._body_sink: Exchange | _Queued | None = None
        self._queue: deque[_Queued] = deque()
        self._request_done = False
        self._response_done = False
        self._response_started = False
        self._framing = _BODY_NONE
        self._close_after = False
        self._pause_mask = 0
        self.write_paused = False
        self._body_bytes = 0
        # The request body clock (DEADLINE_BODY): bytes seen at the last sweep, seconds since
        # they last grew and since the body began (counted only while reading is not paused),
        # and when the sweep last looked.
        self._body_seen = 0
        self._body_idle = 0.0
        self._body_elapsed = 0.0
        self._body_checked = 0.0
        # The last Host value found valid (a keep-alive client repeats it: checked once).
        self._host_ok = b""
        # Whether the peer is a trusted proxy, for the limits it was decided with.
        self._trust_limits: object = None
        self._trusted = False
        # Response bytes produced while handling one upstream read, written with one syscall.
        self._out: list[bytes] = []
        self.deadline = 0.0
        self.deadline_kind = 0
        # When the exchange gives up waiting for its upstream's response head (0: not waiting);
        # set by the exchange (``expect_response``), checked by the sweep.
        self.response_deadline = 0.0
        self.closed = False
        # Not None while an upgrade request waits for its backend's answer: the bytes the client
        # sent after its head (the parser stopped there; reading is paused meanwhile).
        self._held: bytes | None = None
        # The byte relay this connection became when its backend accepted an upgrade (101).
        self._tunnel: Tunnel | None = None

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        stream = cast(asyncio.Transport, transport)
        stream.set_write_buffer_limits(_WRITE_HIGH_WATER, _WRITE_LOW_WATER)
        self.transport = stream
        peer = None if self.client_ip else transport.get_extra_info("peername")  # (PROXY protocol set it)
        if peer:
            self.client_ip, self.client_port = peer[0], peer[1]
        sslobj = transport.get_extra_info("ssl_object")
        if sslobj is not None:
            self.scheme = b"https"
            sni = getattr(sslobj, "agw_sni", None)
            self.sni = sni.encode() if sni else None
            self.client_cert = sslobj.getpeercert(binary_form=True) is not None
        worker = self.worker
        worker.connections.add(self)
        self.opened = worker.loop.time()
        self.deadline = self.opened + worker.runtime.limits.header_read_timeout
        self.deadline_kind = DEADLINE_HEADER

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        rest = b""
        try:
            self.parser.feed_data(data)
            exchange = self._exchange
            if exchange is not None:
                exchange.client_data_done()
        except httptools.HttpParserUpgrade as exc:
            # llhttp stops after the head of an upgrade request (CONNECT is refused before). The
            # parser is spent: a fresh one reads whatever comes next over HTTP/1.1.
            offset = exc.args[0] if exc.args else len(data)
            self.parser = httptools.HttpRequestParser(self)
            if self._body_sink is not None:
                self.on_message_complete()
            rest = data[offset:]
            if self._held is not None:
                # A relayed upgrade still waiting for its answer: what follows the head is the
                # new protocol's (101) or the next request's (refused); it waits, and so does
                # reading. The head queued for the upstream goes out now.
                self._held = rest
                rest = b""
                self._pause(_PAUSE_UPGRADE)
                exchange = self._exchange
                if exchange is not None:
                    exchange.client_data_done()
            # Otherwise (h2c, HTTP/1.0, or an upgrade already refused) the request is served as
            # plain HTTP and parsing goes on (below, outside this handler: an error there must
            # not be chained to this exception).
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, _Rejected):
                self._reject(cause.status, cause.message, cause.ctx)
            else:
                self.worker.log_internal_error("request handling failed", cause or exc)
                self._reject(500, "internal error while handling the request")
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")
        if rest and not self.closed:
            self.data_received(rest)

    def eof_received(self) -> bool | None:
        # The client half-closed. Finish the response in flight (if any), then close.
        if self._exchange is not None and not self._response_done:
            sink = self._body_sink
            if sink is not None and sink is not DISCARD and not isinstance(sink, _Queued):
                # The body can never be complete: answer now (and free the upstream connection)
                # rather than when the body timeout notices.
                self._reject(400, "the client closed its side before the request body was complete")
                return None
            self._close_after = True
            # An exchange streaming to a client that sends nothing (an event stream) may end now:
            # that client has gone.
            on_eof = getattr(self._exchange, "client_eof", None)
            if on_eof is not None:
                on_eof()
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connections.discard(self)
        exchange = self._exchange
        if exchange is not None and not self._response_done:
            self._exchange = None
            self._response_done = True
            ctx = self._ctx
            if ctx is not None and not ctx.status:
                ctx.status = 499  # client closed before the response started (nginx's convention)
                ctx.reason = "client closed the connection"
            exchange.client_lost()
            if ctx is not None:
                self.worker.observe(ctx)
        self._queue.clear()

    def pause_writing(self) -> None:
        self.write_paused = True
        if self._exchange is not None:
            self._exchange.client_write_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        if self._exchange is not None:
            self._exchange.client_write_resumed()

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        self._parsing_head = True
        self._url = b""
        self._headers = []
        self._head_bytes = 0
        limits = self._limits = self.worker.runtime.limits
        if self.deadline_kind == DEADLINE_IDLE:
            self.deadline = self.worker.loop.time() + limits.header_read_timeout
            self.deadline_kind = DEADLINE_HEADER

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_bytes += len(url)
        if self._head_bytes > self._limits.max_header_size:
            raise _Rejected(414 if len(self._url) == self._head_bytes else 431, "request head too large")

    def on_header(self, name: bytes, value: bytes) -> None:
        size = self._head_bytes = self._head_bytes + len(name) + len(value) + 4
        limits = self._limits
        if not self._parsing_head:
            # A trailer field of a chunked body (llhttp reports them as headers): not a header
            # of the request, whose head was checked and handed on already (a queued request's
            # too), so it is dropped, as trailers are not forwarded; bounded like the head.
            if size > limits.max_header_size:
                raise _Rejected(431, f"request trailers exceed {limits.max_header_size} bytes")
            return
        headers = self._headers
        headers.append((name.lower(), value))
        if size > limits.max_header_size or len(headers) > limits.max_headers:
            if size > limits.max_header_size:
                raise _Rejected(431, f"request headers exceed {limits.max_header_size} bytes")
            raise _Rejected(431, f"more than {limits.max_headers} request headers")

    def on_headers_complete(self) -> None:
        self.deadline_kind = 0
        parser = self.parser
        headers = self._headers
        limits = self._limits
        host: bytes | None = None
        content_length: int | None = None
        chunked = False
        expect_continue = False
        forwarded = False
        options = False
        fields = _HEAD_FIELDS
        for name, value in headers:
            field = fields.get(name)
            if field is None:
                continue  # (most headers: one lookup each)
            if field == _HOST:
                if host is not None:
                    raise _Rejected(400, "more than one Host header")
                host = value
            elif field == _CONTENT_LENGTH:
                content_length = int(value)  # llhttp has validated it
            elif field == _TRANSFER_ENCODING:
                chunked = True
            elif field == _CONNECTION:
                options = options or value not in PLAIN_CONNECTION
            elif field == _EXPECT:
                expect_continue = expect_continue or value.lower() == b"100-continue"
            else:
                forwarded = True
        if options:
            headers = self._headers = without_connection_options(headers)
        version = parser.get_http_version()
        method = parser.get_method()
        if method == b"CONNECT":
            # No tunnel to a host the client names (as over HTTP/2). Served as a request, its
            # head went upstream declaring a body llhttp never reads (it stops at a CONNECT
            # head): an upstream that answered early, then read that body from the pooled
            # connection, took it from the next client's request.
            raise _Rejected(501, "CONNECT is not supported")
        try:
            parts = split_target(self._url, limits.decode_escaped_slashes)
        except PathError as exc:
            raise _Rejected(400, str(exc)) from None
        if parts is None:
            raise _Rejected(400, "invalid request target")
        path, query, authority = parts
        if path == b"*" and method != b"OPTIONS":
            raise _Rejected(400, "the asterisk target is only for OPTIONS")
        if host is not None and host != self._host_ok:
            sent = host
            host = self._valid_host(host, "invalid Host header")
            if host != sent:  # another spelling (case, trailing dot): the one routing reads
                headers[:] = [(name, host if name == b"host" else value) for name, value in headers]
        if authority is not None:
            # RFC 9112 §3.2.2: the target's authority wins and the Host field is ignored. It is
            # replaced by the authority in the request's headers too: routing takes the authority,
            # and a policy reading request.headers["host"] must not see another host.
            received = host
            host = authority if authority == self._host_ok else self._valid_host(authority, "invalid request target")
            if not host:
                raise _Rejected(400, "invalid request target: empty authority")
            if received is not None:
                headers[:] = [(name, host if name == b"host" else value) for name, value in headers]
        elif not host:
            if version != "1.0":
                raise _Rejected(400, "missing Host header" if host is None else "empty Host header")
            host = b""
        # The head is valid: from here on an error belongs to this request, not to its head
        # (a head error while an earlier request is answered must not cut that one short).
        self._parsing_head = False
        target = path + b"?" + query if query else path
        ctx = RequestCtx(
            method,
            target,
            path,
            query,
            host,
            headers,
            version,
            parser.should_keep_alive(),
            content_length,
            chunked,
            expect_continue,
            self.client_ip,
            self.client_port,
            self.scheme,
            time.perf_counter(),
            self.bind.gateway,
        )
        if not host:
            ctx.auto_host = True  # an HTTP/1.0 request without Host: the backend's authority goes upstream
        if forwarded and not self.bind.internal:
            self._forwarded(ctx)
        self._body_bytes = 0
        limit = limits.max_request_body_size
        if limit is not None and content_length is not None and content_length > limit:
            raise _Rejected(413, f"request body of {content_length} bytes exceeds the limit of {limit}", ctx)
        if parser.should_upgrade() and version == "1.1":
            self._upgrade_request(ctx)
        if (chunked or content_length) and not expect_continue:
            self._start_body_clock()
        if self._exchange is None and not self._queue:
            self._start(ctx)
        else:
            queued = _Queued(ctx)
            self._queue.append(queued)
            self._body_sink = queued
            self._pause(PAUSE_PIPELINE)

    def _upgrade_request(self, ctx: RequestCtx) -> None:
        """The client asks to switch protocols (``Upgrade`` listed in ``Connection``): the
        request is routed and policed like any other and forwarded with the protocols it names;
        the backend's 101 turns the connection into a tunnel. Only h2c is left out (served as
        plain HTTP). An upgrade request has no body: bytes after its head belong to the new
        protocol, so a declared body (which llhttp does not read) is refused."""
        tokens = [
            token.strip()
            for name, value in ctx.headers
            if name == b"upgrade"
            for token in value.split(b",")
            if token.strip() and token.strip().lower() not in _NOT_RELAYED
        ]
        if not tokens:
            return
        if ctx.has_body:
            raise _Rejected(400, "an upgrade request cannot carry a body", ctx)
        ctx.upgrade = b", ".join(tokens)
        self._held = b""

    def _valid_host(self, host: bytes, problem: str) -> bytes:
        """``host`` (trailing whitespace llhttp keeps removed) or a 400."""
        valid = valid_host(host)
        if valid is None:
            raise _Rejected(400, problem)
        self._host_ok = valid
        return valid

    def _forwarded(self, ctx: RequestCtx) -> None:
        """The request carries forwarded headers: believed from a trusted proxy, dropped from
        anyone else (server/head.py)."""
        limits = self._limits
        if self._trust_limits is not limits:
            self._trust_limits = limits
            self._trusted = is_trusted(self.client_ip, limits.trusted_proxies)
        apply_forwarded(ctx, self._trusted, limits.trusted_proxies)

    def on_body(self, body: bytes) -> None:
        self._body_bytes += len(body)
        limit = self._limits.max_request_body_size
        if limit is not None and self._body_bytes > limit:
            raise _Rejected(413, f"request body exceeds the limit of {limit} bytes")
        sink = self._body_sink
        if isinstance(sink, _Queued):
            sink.body.append(body)
        elif sink is not None:
            sink.request_body(body)

    def on_message_complete(self) -> None:
        if self.deadline_kind == DEADLINE_BODY:
            self.deadline_kind = 0
        sink = self._body_sink
        self._body_sink = None
        if isinstance(sink, _Queued):
            sink.done = True
            return
        self._request_done = True
        if sink is not None:
            sink.request_end()
        if self._response_done:
            self._next()

    # ------------------------------------------------------------------ serving

    def _start(self, ctx: RequestCtx) -> None:
        """Make ``ctx`` the request being answered and hand it to its exchange."""
        self._ctx = ctx
        self.response_deadline = 0.0
        self._request_done = False
        self._response_done = False
        self._response_started = False
        self._framing = _BODY_NONE
        worker = self.worker
        self._close_after = not ctx.keep_alive or worker.draining
        max_age = worker.runtime.limits.max_connection_duration
        if max_age and worker.loop.time() - self.opened >= max_age:
            self._close_after = True  # maxConnectionDuration: this answer says connection: close
        exchange = worker.dispatch(self, ctx)
        self._exchange = exchange
        self._body_sink = exchange

    def _next(self) -> None:
        """Both the request and its response are complete: move on to the next request."""
        if self._close_after:
            self._close()
            return
        if self._held is not None and self._ctx is not None and self._ctx.upgrade is not None:
            # The upgrade was refused (a policy answered, or the backend did not switch): the
            # connection goes on as HTTP/1.1 with what the client sent after that request.
            held, self._held = self._held, None
            self.worker.loop.call_soon(self._continue_after_refused_upgrade, held)
        self._exchange = None
        self._ctx = None
        if self._queue:
            queued = self._queue.popleft()
            self._start(queued.ctx)
            exchange = self._exchange
            assert exchange is not None
            for chunk in queued.body:
                exchange.request_body(chunk)
            if queued.done:
                self.on_message_complete_for_started()
            else:
                self._body_sink = exchange
            if not self._queue:
                self._resume(PAUSE_PIPELINE)
        else:
            now = self.worker.loop.time()
            limits = self.worker.runtime.limits
            self.deadline = now + limits.idle_timeout
            if limits.max_connection_duration:
                # frontendPolicies.http.maxConnectionDuration: an old connection closes once idle
                end = self.opened + limits.max_connection_duration
                if now >= end:
                    self._close()
                    return
                self.deadline = min(self.deadline, end)
            self.deadline_kind = DEADLINE_IDLE

    def _continue_after_refused_upgrade(self, held: bytes) -> None:
        if self.closed:
            return
        # Reading resumes first: the held bytes may hold another upgrade, which pauses again.
        self._resume(_PAUSE_UPGRADE)
        if held:
            self.data_received(held)

    def on_message_complete_for_started(self) -> None:
        """The queued request that just started had its whole body already."""
        self._body_sink = None
        self._request_done = True
        assert self._exchange is not None
        self._exchange.request_end()
        if self._response_done:
            self._next()

    # ------------------------------------------------------------------ response API (exchanges)

    def send_continue(self) -> None:
        """``100 Continue`` for a client that waits for it before sending the body."""
        if not self._request_done and not self._response_started and self.transport is not None:
            self.transport.write(_CONTINUE)
            if not self.deadline_kind and not self._queue:
                self._start_body_clock()  # the client sends its body now

    def send_head(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], content_length: int | None, has_body: bool
    ) -> None:
        """Queue the status line and headers. ``headers`` must not carry framing headers
        (content-length, transfer-encoding, connection); this method adds them."""
        fields = b"".join([b"%s: %s\r\n" % (name, value) for name, value in headers])
        self.send_head_fields(status, fields, content_length, has_body)

    def send_head_fields(self, status: int, fields: bytes, content_length: int | None, has_body: bool) -> None:
        """``send_head`` for a header block already serialized (``name: value\\r\\n`` lines),
        as a proxy builds it while filtering the upstream's headers."""
        ctx = self._ctx
        assert ctx is not None
        ctx.status = status
        self._response_started = True
        line = STATUS_LINES.get(status)
        if line is None:
            line = status_line(status)
        framing: bytes
        if not has_body or ctx.method == b"HEAD" or status in (204, 304) or status < 200:
            self._framing = _BODY_NONE
            if content_length is not None and status not in (204, 304):
                framing = b"content-length: %d\r\n" % content_length
            else:
                framing = b""
        elif content_length is not None:
            self._framing = _BODY_LENGTH
            framing = b"content-length: %d\r\n" % content_length
        elif ctx.version == "1.1":
            self._framing = _BODY_CHUNKED
            framing = b"transfer-encoding: chunked\r\n"
        else:
            # An HTTP/1.0 client cannot read chunked bodies: the end of the body is the close.
            self._framing = _BODY_CLOSE
            framing = b""
            self._close_after = True
        if not self._request_done and (ctx.chunked or ctx.content_length):
            # The body was not read (an early answer): reuse of this connection is not safe.
            self._close_after = True
        if self._close_after:
            end = _CLOSE_END
        elif ctx.version == "1.0":
            end = _KEEP_ALIVE_END
        else:
            end = _CRLF
        # The head stays in pieces: ``flush`` joins it with the body into one buffer.
        self._out += (line, fields, framing, end)

    def send_body(self, chunk: bytes) -> None:
        """Queue a body chunk; it is written by the next ``flush`` (or ``end_response``)."""
        if not chunk:
            return
        ctx = self._ctx
        if ctx is not None:
            ctx.response_bytes += len(chunk)
        framing = self._framing
        if framing == _BODY_CHUNKED:
            self._out += (b"%x\r\n" % len(chunk), chunk, _CRLF)
        elif framing != _BODY_NONE:
            self._out.append(chunk)

    def send_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        """Dropped: trailers reach HTTP/1.1 clients only through an HTTP/2 upstream (gRPC),
        and gRPC clients speak HTTP/2."""

    def flush(self) -> None:
        """Write what ``send_head``/``send_body`` queued, in one system call."""
        out = self._out
        if not out:
            return
        transport = self.transport
        if transport is not None and not self.closed:
            # One contiguous buffer: the kernel's send() of it is cheaper than writev() of the
            # pieces, and joining a response of a few KiB costs less than the difference.
            transport.write(out[0] if len(out) == 1 else b"".join(out))
        self._out = []

    def end_response(self) -> None:
        """The exchange sent its whole response."""
        if self._response_done:
            return
        self._response_done = True
        if self._framing == _BODY_CHUNKED:
            self._out.append(_LAST_CHUNK)
        self.flush()
        ctx = self._ctx
        if ctx is not None:
            self.worker.observe(ctx)
        if self.closed:
            return
        if self._request_done:
            self._next()
        elif self._body_sink is not None:
            # The request body is still arriving: drop it and close once the response is out.
            self._body_sink = DISCARD
            self._close_after = True
            self._close()
        elif ctx is not None and ctx.has_body and self.deadline_kind != DEADLINE_BODY:
            # Answered while being dispatched, before its body: the body is read (and dropped)
            # as it comes, then the connection closes. A request that announced Expect:
            # 100-continue had no clock yet (no 100 was sent): without one, a client that sends
            # nothing more held the connection for good.
            self._start_body_clock()

    def abort(self) -> None:
        """The response cannot be completed (the upstream failed mid-body): close the connection
        so the client sees a truncated response rather than a wrong one."""
        self._out = []
        if not self._response_done:
            self._response_done = True
            ctx = self._ctx
            if ctx is not None:
                self.worker.observe(ctx)
        self._close(force=True)

    def reply(self, ctx: RequestCtx, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        """A response the gateway writes itself (no route, upstream down, limits, ...)."""
        ctx.reason = message
        body = message.encode() + b"\n"
        self.send_head(status, [_TEXT_PLAIN, *headers], len(body), True)
        self.send_body(body)
        self.end_response()

    def switch_exchange(self, old: Exchange, new: Exchange) -> None:
        """``old`` (which was waiting, e.g. on an asynchronous policy) hands the request over to
        ``new``; a no-op when ``old`` no longer serves this connection's current request."""
        if self._exchange is old:
            self._exchange = new
            if self._body_sink is old:
                self._body_sink = new

    def expect_response(self, seconds: float) -> None:
        """The exchange waits for its upstream's response head: ``response_timed_out`` is called
        on it if none came ``seconds`` from now."""
        self.response_deadline = self.worker.loop.time() + seconds

    def response_arrived(self) -> None:
        self.response_deadline = 0.0

    def switch_protocols(self, fields: bytes, upstream: asyncio.Transport, early: bytes) -> None:
        """The backend switched protocols: ``101`` to the client, then this connection is a
        byte tunnel to ``upstream`` (proxy/tunnel.py) until either side closes; the request is
        logged when it ends, with the bytes relayed each way."""
        ctx = self._ctx
        transport = self.transport
        held = self._held
        if self.closed or transport is None or ctx is None or ctx.upgrade is None or held is None:
            upstream.abort()
            return
        self._held = None
        ctx.status = 101
        self._response_started = self._response_done = True
        self._exchange = None
        self._body_sink = None
        self.response_deadline = 0.0
        self._out.append(b"%s%s\r\n" % (STATUS_LINES[101], fields))
        self.flush()
        # The tunnel decides when each side reads from now on.
        self._pause_mask = 0
        self.deadline = self.worker.loop.time()
        self.deadline_kind = DEADLINE_TUNNEL
        tunnel = self._tunnel = Tunnel(transport, upstream, self._tunnel_ended)
        tunnel.start(held, early)

    def _tunnel_ended(self, tunnel: Tunnel) -> None:
        self._tunnel = None
        self.closed = True
        self.deadline_kind = 0
        self.worker.connections.discard(self)
        ctx = self._ctx
        if ctx is not None:
            ctx.request_bytes += tunnel.from_client
            ctx.response_bytes += tunnel.from_upstream
            if tunnel.error and not ctx.error:
                ctx.error = tunnel.error
            self.worker.observe(ctx)

    @property
    def max_buffer_size(self) -> int:
        return self._limits.max_buffer_size

    def pause_request_body(self, reason: int = PAUSE_UPSTREAM) -> None:
        self._pause(reason)

    def resume_request_body(self, reason: int = PAUSE_UPSTREAM) -> None:
        self._resume(reason)

    # ------------------------------------------------------------------ internals

    def _pause(self, reason: int) -> None:
        if not self._pause_mask and self.transport is not None and not self.closed:
            self.transport.pause_reading()
        self._pause_mask |= reason

    def _resume(self, reason: int) -> None:
        if not self._pause_mask & reason:
            return
        self._pause_mask &= ~reason
        if not self._pause_mask and self.transport is not None and not self.closed:
            self.transport.resume_reading()

    def _reject(self, status: int, message: str, rejected: RequestCtx | None = None) -> None:
        """Parsing failed or a limit was hit: answer in order if possible, then close."""
        if self.closed:
            return
        if self._response_done and not self._request_done and self._exchange is not None:
            # The request was answered before its body was read, and its body now fails (a
            # stall, bad chunks, over the limit): that answer was the one; close, never a second.
            self._close()
            return
        in_head = self._parsing_head or rejected is not None
        self._parsing_head = False
        sink = self._body_sink
        self._body_sink = DISCARD
        self._queue.clear()
        self._close_after = True
        self._pause(PAUSE_PIPELINE)
        exchange = self._exchange
        if exchange is not None and not self._response_done:
            if in_head or isinstance(sink, _Queued):
                # A later (pipelined) request is bad; the one in flight is answered first and
                # the connection closes after it.
                return
            # The body of the request being answered is bad: stop its exchange.
            self._exchange = DISCARD
            exchange.client_lost()
            if self._response_started:
                self.abort()
                return
        ctx = rejected
        if ctx is None:
            if exchange is not None and not self._response_done and self._ctx is not None:
                ctx = self._ctx
            else:
                ctx = RequestCtx(
                    b"-",
                    b"-",
                    b"-",
                    b"",
                    b"",
                    [],
                    "1.1",
                    False,
                    None,
                    False,
                    False,
                    self.client_ip,
                    self.client_port,
                    self.scheme,
                    time.perf_counter(),
                    self.bind.gateway,
                )
        self._ctx = ctx
        self._exchange = DISCARD
        self._response_done = False
        self._response_started = False
        self._request_done = True
        self.reply(ctx, status, message)

    def _close(self, force: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.worker.connections.discard(self)
        transport = self.transport
        if transport is not None:
            if force:
                transport.abort()
            else:
                transport.close()

    def check_deadline(self, now: float) -> None:
        """Called by the worker's sweep: close connections that idle or trickle their head, cut
        requests that trickle their body."""
        if self.response_deadline and now >= self.response_deadline:
            self.response_deadline = 0.0
            on_timeout = getattr(self._exchange, "response_timed_out", None)
            if on_timeout is not None:
                on_timeout()
        kind = self.deadline_kind
        if not kind:
            return
        if kind == DEADLINE_TUNNEL:
            tunnel = self._tunnel
            if tunnel is not None:
                elapsed, self.deadline = now - self.deadline, now
                tunnel.check_idle(elapsed, self.worker.runtime.limits.tunnel_idle_timeout)
            return
        if kind == DEADLINE_BODY:
            self._check_body(now)
        elif now < self.deadline:
            return
        elif kind == DEADLINE_HEADER and (self._url or self._headers):
            self.deadline_kind = 0
            self._reject(408, "timed out reading the request head")
        else:
            self._close()

    def _start_body_clock(self) -> None:
        self.deadline_kind = DEADLINE_BODY
        self._body_checked = self.worker.loop.time()
        self._body_seen = self._body_bytes
        self._body_idle = self._body_elapsed = 0.0

    def _check_body(self, now: float) -> None:
        """The body must not pause longer than ``requestBodyIdleTimeout`` between reads, nor
        average less than ``requestBodyMinRate`` once ``requestBodyMinRateGrace`` has passed
        (a trickle that never pauses). Time while the gateway itself is not reading (upstream
        back-pressure, a queued pipelined request) does not count. No per-read timer: the sweep
        compares byte counts."""
        elapsed = now - self._body_checked
        self._body_checked = now
        if self._pause_mask:
            return
        limits = self._limits
        received = self._body_bytes
        if received != self._body_seen:
            self._body_seen = received
            self._body_idle = 0.0
        else:
            self._body_idle += elapsed
        total = self._body_elapsed = self._body_elapsed + elapsed
        message = body_stall(limits, received, total, self._body_idle)
        if message is None:
            return
        self.deadline_kind = 0
        self._reject(408, message)

    def retire(self, reason: str) -> None:
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.abort(reason)
        elif self._held is not None:
            self._close(force=True)  # an upgrade waiting for its 101 would become a tunnel
        else:
            self.close_if_idle()

    def close_if_idle(self) -> bool:
        """Used when draining: close a keep-alive connection that has no request in flight and
        none being received (``_url`` and ``_headers`` keep the last request's until the next
        begins: they cannot tell an idle connection from one in the middle of a head)."""
        if self._tunnel is not None:
            return False  # a tunnel runs until it ends or the termination deadline cuts it
        if self._exchange is None and not self._queue and not self._parsing_head:
            self._close()
            return True
        self._close_after = True
        return False
