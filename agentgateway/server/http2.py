"""HTTP/2 server side of a client connection (RFC 9113): streams, flow control, limits, GOAWAY.

One ``Http2Connection`` per connection that negotiated h2 (ALPN on TLS, the connection preface
on plaintext: ``negotiate.py``); libnghttp2 keeps the protocol state (``core/http2.py``).
Each request stream is an ``Http2Stream``: the same ``ResponseWriter`` an HTTP/1.1 connection is,
handed to the same ``worker.dispatch`` with a ``RequestCtx`` built by the same head checks
(``head.py``), so routes, policies and backends do not know which protocol the client spoke.

Flow control carries back-pressure both ways. Request body: a stream's received bytes are
acknowledged (its window reopened) once handed to the exchange, and not while the exchange has
paused the request body, so a client never has more than a window in flight. Response body:
bytes beyond the client's window wait in nghttp2; past a high-water mark the exchange is told to
pause its upstream, as a full socket buffer does on HTTP/1.1.

gRPC requests (``content-type: application/grpc``) get the gateway's own answers as gRPC
statuses (a trailers-only response), and their ``grpc-timeout`` is a deadline: when it passes,
the exchange is cancelled and the client answered DEADLINE_EXCEEDED.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, cast

from ngh2 import (
    ConnectionClosed,
    DataReceived,
    Event,
    GoAwayReceived,
    NGH2Error,
    PingAcknowledged,
    RequestReceived,
    StreamClosed,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)

from agentgateway.core.context import RequestCtx
from agentgateway.core.exchange import DISCARD, PAUSE_UPSTREAM, Exchange
from agentgateway.core.http2 import (
    DEFAULT_WINDOW,
    INTERNAL_ERROR,
    NO_ERROR,
    REFUSED_STREAM,
    local_settings,
    new_connection,
)
from agentgateway.core.request import Headers, PathError, split_target
from agentgateway.server.forwarded import FORWARDED_HEADERS, is_trusted
from agentgateway.server.head import KNOWN_METHODS, apply_forwarded, body_stall, valid_host

if TYPE_CHECKING:
    from agentgateway.config.settings import ServerLimits
    from agentgateway.server.host import ConnectionHost, ServedBind

_WRITE_HIGH_WATER = 256 * 1024
_WRITE_LOW_WATER = 64 * 1024
# Bytes a stream may queue beyond the client's window before its exchange is told to pause.
_STREAM_HIGH_WATER = 256 * 1024
_STREAM_LOW_WATER = 64 * 1024
# ... and all streams of a connection together: a client that opens its 100 streams and reads
# none of them would otherwise hold 100 high-water marks (25 MiB) per connection. A stream's mark
# is its share of this while many are open.
_CONNECTION_HIGH_WATER = 2 * 1024 * 1024

# Response fields HTTP/2 forbids (RFC 9113 §8.2.2) or that the stream writes itself.
_NOT_RELAYED = frozenset(
    (b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade", b"te", b"content-length")
)
_STATUS = {status: str(status).encode() for status in range(100, 600)}
_TEXT_PLAIN = (b"content-type", b"text/plain; charset=utf-8")
_GRPC = b"application/grpc"
_GRPC_CONTENT_TYPE = (b"content-type", b"application/grpc")

# The gateway's own answers as gRPC status codes (the gRPC spec's HTTP-to-gRPC mapping; a 504 of
# the gateway is always a timeout, hence DEADLINE_EXCEEDED; limits are RESOURCE_EXHAUSTED).
_GRPC_CODES = {400: 13, 401: 16, 403: 7, 404: 12, 413: 8, 429: 14, 431: 8, 500: 13, 502: 14, 503: 14, 504: 4}
_GRPC_UNKNOWN = 2
_GRPC_DEADLINE_EXCEEDED = 4
# grpc-timeout units (the gRPC over HTTP/2 spec).
_GRPC_TIMEOUT_UNITS = {ord("H"): 3600.0, ord("M"): 60.0, ord("S"): 1.0, ord("m"): 1e-3, ord("u"): 1e-6, ord("n"): 1e-9}


def grpc_message(text: str) -> bytes:
    """``grpc-message``: UTF-8, percent-encoded outside printable ASCII (and ``%`` itself)."""
    out = bytearray()
    for byte in text.encode():
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def grpc_timeout(value: bytes) -> float | None:
    """Seconds of a ``grpc-timeout`` value (at most 8 digits and a unit), None when invalid."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _GRPC_TIMEOUT_UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit


def _head_fields(fields: bytes) -> list[tuple[bytes, bytes]]:
    """A serialized header block (``name: value\\r\\n`` lines) as HTTP/2 fields."""
    out = []
    for line in fields.split(b"\r\n"):
        if line:
            name, _, value = line.partition(b":")
            name = name.lower()
            if name not in _NOT_RELAYED:
                out.append((name, value.strip()))
    return out


class Http2Stream:
    """One request and its response: the ``ResponseWriter`` of the exchange serving it."""

    __slots__ = (
        "conn",
        "stream_id",
        "bind",
        "sni",
        "client_cert",
        "ctx",
        "exchange",
        "closed",
        "write_paused",
        "response_deadline",
        "_head",
        "_head_end",
        "_pending",
        "_trailers",
        "_no_body",
        "_response_started",
        "_response_done",
        "_end_sent",
        "_request_done",
        "_pause_mask",
        "_unacked",
        "_touched",
        "limits",
        "_grpc",
        "_grpc_timer",
        "_body_bytes",
        "_body_clock",
        "_body_seen",
        "_body_idle",
        "_body_elapsed",
        "_body_checked",
    )

    def __init__(self, conn: Http2Connection, stream_id: int) -> None:
        self.conn = conn
        self.stream_id = stream_id
        self.bind = conn.bind
        self.sni = conn.sni
        self.client_cert = conn.client_cert
        self.ctx: RequestCtx | None = None
        self.exchange: Exchange = DISCARD
        # Request limits of the config this stream started under (a reload applies to the next).
        self.limits = conn.worker.runtime.limits
        self.closed = False
        self.write_paused = conn.write_paused
        self.response_deadline = 0.0
        self._head: list[tuple[bytes, bytes]] | None = None  # response head not yet sent
        self._head_end = False  # the head is the whole response (trailers-only, no body)
        self._pending: list[bytes] = []  # body chunks of this flush, handed to nghttp2 together
        self._trailers: list[tuple[bytes, bytes]] | None = None
        self._no_body = False
        self._response_started = False
        self._response_done = False
        self._end_sent = False
        self._request_done = False
        self._pause_mask = 0
        self._unacked = 0  # received bytes not acknowledged while the request body is paused
        self._touched = False
        self._grpc = False
        self._grpc_timer: asyncio.TimerHandle | None = None
        self._body_bytes = 0
        self._body_clock = False
        self._body_seen = 0
        self._body_idle = 0.0
        self._body_elapsed = 0.0
        self._body_checked = 0.0

    # ------------------------------------------------------------------ request (the connection)

    def begin(self, headers: Iterable[tuple[bytes, bytes]], ended: bool) -> None:
        """The request head arrived: check it, build its context, dispatch it."""
        conn = self.conn
        limits = self.limits
        method = path = authority = None
        content_length: int | None = None
        host: bytes | None = None
        regular: Headers = []
        size = 0
        forwarded = expect_continue = False
        timeout: bytes | None = None
        cookies = 0
        for name, value in headers:
            size += len(name) + len(value) + 32  # RFC 9113 §6.5.2's accounting
            if name[0] == 0x3A:  # ":"
                if name == b":method":
                    method = value
                elif name == b":path":
                    path = value
                elif name == b":authority":
                    authority = value
                elif name == b":protocol":
                    method = b"CONNECT"  # extended CONNECT (RFC 8441): refused below
                continue
            regular.append((name, value))
            if name == b"content-length":
                if not value.isdigit() or (content_length is not None and int(value) != content_length):
                    self._refuse(400, "invalid content-length")
                    return
                content_length = int(value)
            elif name == b"content-type":
                if value.startswith(_GRPC) and (len(value) == 16 or value[16] in b"+;"):
                    self._grpc = True
            elif name == b"host":
                host = value
            elif name == b"grpc-timeout":
                timeout = value
            elif name == b"expect":
                expect_continue = value.lower() == b"100-continue"
            elif name == b"cookie":
                cookies += 1
            elif name in FORWARDED_HEADERS:
                forwarded = True
        if ended:
            self._request_done = True
        if method == b"CONNECT":
            self._refuse(501, "CONNECT is not supported over HTTP/2")
            return
        if method is None or path is None:
            self._refuse(400, "malformed request: :method and :path are required")
            return
        if method not in KNOWN_METHODS:
            self._refuse(400, "unknown method")
            return
        if size > conn.header_limit:
            self._refuse(431, f"request headers exceed {conn.header_limit} bytes")
            return
        try:
            parts = split_target(path, limits.decode_escaped_slashes)
        except PathError as exc:
            self._refuse(400, str(exc))
            return
        if parts is None or parts[2] is not None:
            self._refuse(400, "invalid request target")
            return
        path, query, _ = parts
        if path == b"*" and method != b"OPTIONS":
            self._refuse(400, "the asterisk target is only for OPTIONS")
            return
        # RFC 9113 §8.3.1: :authority, else Host. nghttp2 refuses a second Host, not one that
        # names another host than :authority: routing would take :authority while CEL and
        # header-based policies read ``host``, so the two must agree (case aside) or it is 400.
        checked = valid_host(authority if authority is not None else host or b"")
        if not checked:
            self._refuse(400, "invalid :authority" if checked is None else "missing :authority")
            return
        if host is not None:
            if authority is not None and valid_host(host) != checked:
                self._refuse(400, "Host differs from :authority")
                return
            if host != checked:  # another spelling (case, trailing dot): the one routing reads
                regular = [(n, checked if n == b"host" else v) for n, v in regular]
        if cookies > 1:
            # RFC 9113 §8.2.3: split cookie fields are joined again, as HTTP/1.1 sends them.
            joined = b"; ".join([v for n, v in regular if n == b"cookie"])
            regular = [(n, v) for n, v in regular if n != b"cookie"]
            regular.append((b"cookie", joined))
        target = path + b"?" + query if query else path
        ctx = self.ctx = RequestCtx(
            method,
            target,
            path,
            query,
            checked,
            regular,
            "2",
            True,
            content_length,
            # A body of unknown length: an HTTP/1.1 upstream gets it chunked.
            not ended and content_length is None,
            expect_continue,
            conn.client_ip,
            conn.client_port,
            conn.scheme,
            time.perf_counter(),
            self.bind.gateway,
        )
        if forwarded and not self.bind.internal:
            apply_forwarded(ctx, conn.trusted(limits), limits.trusted_proxies)
        body_limit = limits.max_request_body_size
        if body_limit is not None and content_length is not None and content_length > body_limit:
            self._refuse(413, f"request body of {content_length} bytes exceeds the limit of {body_limit}")
            return
        if self._grpc and timeout is not None:
            seconds = grpc_timeout(timeout)
            if seconds is None:
                self._refuse(400, f"invalid grpc-timeout {timeout.decode('latin-1')!r}")
                return
            self._grpc_timer = conn.loop.call_later(seconds, self._deadline_exceeded)
        if not ended and not expect_continue:
            self._start_body_clock()
        self.exchange = conn.worker.dispatch(self, ctx)
        if ended and not self.closed:
            self._touched = True
            conn.touched.append(self)
            self.exchange.request_end()

    def _refuse(self, status: int, message: str) -> None:
        """A head that is not a request to serve: answered, its body (if any) dropped."""
        if self.ctx is None:
            conn = self.conn
            self.ctx = RequestCtx(
                b"-", b"-", b"-", b"", b"", [], "2", True, None, False, False,
                conn.client_ip, conn.client_port, conn.scheme, time.perf_counter(), self.bind.gateway,
            )  # fmt: skip
        self.reply(self.ctx, status, message)

    def request_data(self, data: bytes) -> None:
        size = len(data)
        if self._response_done or self.exchange is DISCARD:
            self.conn.acknowledge(self.stream_id, size)  # nobody reads it: dropped
            return
        self._body_bytes += size
        limit = self.limits.max_request_body_size
        if limit is not None and self._body_bytes > limit:
            self.conn.acknowledge(self.stream_id, size)
            self._cut(413, f"request body exceeds the limit of {limit} bytes")
            return
        if self._pause_mask:
            self._unacked += size
        else:
            self.conn.acknowledge(self.stream_id, size)
        if not self._touched:
            self._touched = True
            self.conn.touched.append(self)
        self.exchange.request_body(data)

    def request_end(self) -> None:
        if self._request_done:
            return
        self._request_done = True
        self._body_clock = False
        if self._end_sent:
            return
        if not self._touched:
            self._touched = True
            self.conn.touched.append(self)
        self.exchange.request_end()

    def data_done(self) -> None:
        self._touched = False
        if not self.closed:
            self.exchange.client_data_done()

    def reset(self) -> None:
        """The client reset the stream (RST_STREAM): the request is cancelled."""
        self._lost()
        self._finish()

    def _lost(self) -> None:
        """The client will not see the rest: stop the exchange, log the request."""
        if self._response_done:
            return
        self._response_done = True
        exchange, self.exchange = self.exchange, DISCARD
        ctx = self.ctx
        if ctx is not None and not ctx.status:
            ctx.status = 499  # client went away before the response started (nginx's convention)
            ctx.reason = "client cancelled the request"
        exchange.client_lost()
        if ctx is not None:
            self.conn.worker.observe(ctx)

    def _cut(self, status: int, message: str) -> None:
        """The request body broke a limit: stop its exchange, answer if nothing was sent yet."""
        exchange, self.exchange = self.exchange, DISCARD
        exchange.client_lost()
        if self._response_started:
            self.abort()
        else:
            assert self.ctx is not None
            self.reply(self.ctx, status, message)

    # ------------------------------------------------------------------ ResponseWriter

    @property
    def max_buffer_size(self) -> int:
        return self.limits.max_buffer_size

    def send_continue(self) -> None:
        if not self._request_done and not self._response_started and not self.closed:
            self.conn.h2.send_informational_response(self.stream_id, [(b":status", b"100")])
            self.conn.write()
            if not self._body_clock:
                self._start_body_clock()

    def send_head(
        self, status: int, headers: Iterable[tuple[bytes, bytes]], content_length: int | None, has_body: bool
    ) -> None:
        fields = [(name.lower(), value) for name, value in headers if name.lower() not in _NOT_RELAYED]
        self._set_head(status, fields, content_length, has_body)

    def send_head_fields(self, status: int, fields: bytes, content_length: int | None, has_body: bool) -> None:
        self._set_head(status, _head_fields(fields), content_length, has_body)

    def _set_head(
        self, status: int, fields: list[tuple[bytes, bytes]], content_length: int | None, has_body: bool
    ) -> None:
        ctx = self.ctx
        assert ctx is not None
        ctx.status = status
        self._response_started = True
        if self._grpc and ctx.reason and status != 200:
            self._grpc_status(_GRPC_CODES.get(status, _GRPC_UNKNOWN), ctx.reason)
            return
        head = [(b":status", _STATUS.get(status) or str(status).encode())]
        head += fields
        if not has_body or ctx.method == b"HEAD" or status in (204, 304):
            self._no_body = True
            if content_length is not None and status not in (204, 304):
                head.append((b"content-length", b"%d" % content_length))
        elif content_length is not None:
            head.append((b"content-length", b"%d" % content_length))
        self._head = head

    def _grpc_status(self, code: int, message: str) -> None:
        """The response is a gRPC status alone (trailers-only: one HEADERS frame that ends it)."""
        self._head = [
            (b":status", b"200"),
            _GRPC_CONTENT_TYPE,
            (b"grpc-status", b"%d" % code),
            (b"grpc-message", grpc_message(message)),
        ]
        self._head_end = True
        self._no_body = True

    def send_body(self, chunk: bytes) -> None:
        if not chunk or self._no_body:
            return
        ctx = self.ctx
        if ctx is not None:
            ctx.response_bytes += len(chunk)
        self._pending.append(chunk)

    def send_trailers(self, trailers: list[tuple[bytes, bytes]]) -> None:
        if not self._no_body:
            self._trailers = [(n, v) for n, v in trailers if n[:1] != b":" and n not in _NOT_RELAYED]

    def flush(self) -> None:
        if self.closed:
            return
        self._push()
        self.conn.write()

    def end_response(self) -> None:
        if self._response_done:
            return
        self._response_done = True
        self._cancel_timers()
        if not self.closed:
            if not self._response_started:
                self._head = [(b":status", b"200")]
                self._no_body = True
            self._push(end=True)
            self.conn.write()
        ctx = self.ctx
        if ctx is not None:
            self.conn.worker.observe(ctx)

    def abort(self) -> None:
        """The response cannot be completed: the stream is reset, so the client sees it cut."""
        self._pending.clear()
        if not self._response_done:
            self._response_done = True
            ctx = self.ctx
            if ctx is not None:
                self.conn.worker.observe(ctx)
        if not self.closed:
            self._reset_stream(INTERNAL_ERROR)
            self.conn.write()

    def reply(self, ctx: RequestCtx, status: int, message: str, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        ctx.reason = message
        body = message.encode() + b"\n"
        self.send_head(status, [_TEXT_PLAIN, *headers], len(body), True)
        self.send_body(body)
        self.end_response()

    def switch_exchange(self, old: Exchange, new: Exchange) -> None:
        if self.exchange is old:
            self.exchange = new

    def pause_request_body(self, reason: int = PAUSE_UPSTREAM) -> None:
        self._pause_mask |= reason

    def resume_request_body(self, reason: int = PAUSE_UPSTREAM) -> None:
        if not self._pause_mask & reason:
            return
        self._pause_mask &= ~reason
        if not self._pause_mask and self._unacked:
            unacked, self._unacked = self._unacked, 0
            self.conn.acknowledge(self.stream_id, unacked)
            self.conn.write()

    def switch_protocols(self, fields: bytes, upstream: asyncio.Transport, early: bytes) -> None:
        """Never asked: an HTTP/2 request carries no ``Upgrade`` (a connection-specific field,
        RFC 9113 §8.2.2) and CONNECT, extended CONNECT (RFC 8441) included, is refused with 501
        before routing; should a backend's 101 reach here anyway, the stream fails cleanly."""
        upstream.close()
        ctx = self.ctx
        if ctx is not None:
            ctx.error = "a protocol switch cannot be relayed over HTTP/2"
        self.abort()

    def expect_response(self, seconds: float) -> None:
        self.response_deadline = self.conn.loop.time() + seconds

    def response_arrived(self) -> None:
        self.response_deadline = 0.0

    # ------------------------------------------------------------------ sending

    def _push(self, end: bool = False) -> None:
        """Hand the head and the body queued so far to nghttp2 (which sends what the client's
        window allows and keeps the rest); with ``end``, the response is complete."""
        h2 = self.conn.h2
        sid = self.stream_id
        head = self._head
        pending = self._pending
        if head is not None:
            self._head = None
            if self._head_end or (end and not pending and self._trailers is None):
                h2.send_response(sid, head, end_stream=True)
                self._ended()
                return
            h2.send_response(sid, head)
        if pending:
            data = pending[0] if len(pending) == 1 else b"".join(pending)
            pending.clear()
            last = end and self._trailers is None
            h2.send_data(sid, data, end_stream=last)
            if last:
                self._ended()
                return
            queued = h2.queued_body_size(sid)
            if queued > self._high_water() and not self.write_paused:
                self.write_paused = True
                self.conn.paused.add(self)
                self.exchange.client_write_paused()
        if end and not self._end_sent:
            trailers = self._trailers
            if trailers is not None:
                h2.send_trailers(sid, trailers)
            else:
                h2.end_stream(sid)
            self._ended()

    def _high_water(self) -> int:
        """Response bytes this stream may queue beyond the client's window before its upstream
        is paused: its share of the connection's mark, at most the stream's own."""
        return min(_STREAM_HIGH_WATER, _CONNECTION_HIGH_WATER // (len(self.conn.streams) or 1))

    def window_opened(self) -> None:
        """The exchange may produce again if what waits for the client's window is below the
        low-water mark: checked on a window update and after every write (the pause may have been
        decided on bytes the next write sent, and a client whose window is now wide sends no
        further update to wait for)."""
        conn = self.conn
        if not self.write_paused or conn.write_paused:
            return
        if conn.h2.queued_body_size(self.stream_id) < min(_STREAM_LOW_WATER, self._high_water() // 4):
            self.write_paused = False
            conn.paused.discard(self)
            self.exchange.client_write_resumed()

    def _ended(self) -> None:
        """The whole response is with nghttp2 (END_STREAM queued)."""
        self._end_sent = True
        if not self._request_done:
            # RFC 9113 §8.1: the response is complete before the request; once it is out the
            # client is asked to stop sending (NO_ERROR), and what it still sends is dropped.
            self.conn.closing.append(self)

    def _reset_stream(self, code: int) -> None:
        with contextlib.suppress(NGH2Error):  # already closed by the client
            self.conn.h2.reset_stream(self.stream_id, code)
        self._finish()

    def _finish(self) -> None:
        """Nothing more is read or written on the stream (nghttp2's StreamClosed forgets it)."""
        if self.closed:
            return
        self.closed = True
        self.conn.paused.discard(self)
        self._cancel_timers()
        if self._unacked:
            unacked, self._unacked = self._unacked, 0
            self.conn.acknowledge(self.stream_id, unacked)  # the connection's window, for others

    def _cancel_timers(self) -> None:
        if self._grpc_timer is not None:
            self._grpc_timer.cancel()
            self._grpc_timer = None
        self.response_deadline = 0.0
        self._body_clock = False

    def _deadline_exceeded(self) -> None:
        """The gRPC deadline (``grpc-timeout``) passed: the exchange is cancelled, the client told."""
        self._grpc_timer = None
        if self._response_done or self.closed:
            return
        ctx = self.ctx
        assert ctx is not None
        exchange, self.exchange = self.exchange, DISCARD
        exchange.client_lost()
        message = "deadline exceeded (grpc-timeout)"
        ctx.error = message
        if not self._response_started:
            self.reply(ctx, 504, message)
            return
        # The response is under way: it ends here with the status in its trailers.
        self._trailers = [(b"grpc-status", b"%d" % _GRPC_DEADLINE_EXCEEDED), (b"grpc-message", grpc_message(message))]
        self._no_body = False
        self.end_response()

    # ------------------------------------------------------------------ connection events

    def pause_writing(self) -> None:
        if not self.write_paused:
            self.write_paused = True
            self.conn.paused.add(self)
            self.exchange.client_write_paused()

    def resume_writing(self) -> None:
        self.window_opened()

    def connection_lost(self) -> None:
        self._lost()
        self.closed = True
        self._cancel_timers()

    def check(self, now: float) -> None:
        """The connection's sweep: the upstream's response head, the request body's pace."""
        if self.response_deadline and now >= self.response_deadline:
            self.response_deadline = 0.0
            on_timeout = getattr(self.exchange, "response_timed_out", None)
            if on_timeout is not None:
                on_timeout()
        if self._body_clock:
            elapsed = now - self._body_checked
            self._body_checked = now
            if self._pause_mask:
                return
            received = self._body_bytes
            if received != self._body_seen:
                self._body_seen = received
                self._body_idle = 0.0
            else:
                self._body_idle += elapsed
            self._body_elapsed += elapsed
            message = body_stall(self.limits, received, self._body_elapsed, self._body_idle)
            if message is not None:
                self._body_clock = False
                self._cut(408, message)

    def _start_body_clock(self) -> None:
        self._body_clock = True
        self._body_checked = self.conn.loop.time()
        self._body_seen = self._body_bytes
        self._body_idle = self._body_elapsed = 0.0


class Http2Connection(asyncio.Protocol):
    """The connection: nghttp2's state, the streams, the settings and the deadlines."""

    __slots__ = (
        "worker",
        "bind",
        "loop",
        "transport",
        "client_ip",
        "client_port",
        "scheme",
        "sni",
        "client_cert",
        "h2",
        "limits",
        "header_limit",
        "streams",
        "paused",
        "touched",
        "closing",
        "closed",
        "write_paused",
        "deadline",
        "_batching",
        "_write_due",
        "_goaway",
        "_ending",
        "_last_stream_id",
        "_trust_limits",
        "_trusted",
        "_last_read",
        "_ping_sent",
    )

    def __init__(self, worker: ConnectionHost, bind: ServedBind) -> None:
        self.worker = worker
        self.bind = bind
        self.loop = worker.loop
        self.transport: asyncio.Transport | None = None
        self.client_ip = ""
        self.client_port = 0
        self.scheme = b"http"
        self.sni: bytes | None = None
        self.client_cert = False  # the TLS client presented a certificate
        self.limits = worker.runtime.limits  # the settings of this connection's life
        self.header_limit = self.limits.http2_max_header_size or self.limits.max_header_size
        # Header lists up to twice the advertised limit are decoded and answered 431 (per stream);
        # larger ones end the connection.
        self.h2 = new_connection(client=False, header_list_cap=2 * self.header_limit)
        self.streams: dict[int, Http2Stream] = {}
        self.paused: set[Http2Stream] = set()  # streams whose exchange is paused (client window)
        # Streams that received request events in the read being handled (flushed after it).
        self.touched: list[Http2Stream] = []
        # Streams whose response is complete before their request: reset once it is sent.
        self.closing: list[Http2Stream] = []
        self.closed = False
        self.write_paused = False
        # When a connection without streams is closed: its first request's head is due within
        # the header timeout, later ones within the idle timeout (0: streams are open).
        self.deadline = 0.0
        self._batching = False
        self._write_due = False  # a write is scheduled for when the loop has read what is ready
        self._goaway = False  # no new stream is served (a GOAWAY was sent or received)
        self._ending = False  # nghttp2 is done with the connection: close once written
        self._last_stream_id = 0
        self._trust_limits: object = None
        self._trusted = False
        self._last_read = 0.0
        self._ping_sent = 0.0

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
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
        limits = self.limits
        h2 = self.h2
        h2.initiate_connection(
            local_settings(
                limits.http2_window_size,
                limits.http2_frame_size,
                limits.http2_max_concurrent_streams,
                self.header_limit,
            )
        )
        if limits.http2_connection_window_size > DEFAULT_WINDOW:
            h2.set_local_window_size(limits.http2_connection_window_size)
        self.worker.connections.add(self)
        now = self.loop.time()
        self._last_read = now
        self.deadline = now + limits.header_read_timeout
        self.write()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        h2 = self.h2
        try:
            h2.receive_data(data)
        except NGH2Error:
            # A connection error (nghttp2 has queued the GOAWAY that names it): the connection ends.
            self._batching = False
            self._write_now()
            self._close()
            return
        if self.limits.http2_keepalive_interval:
            self._last_read = self.loop.time()
        self._batching = True
        self._dispatch(h2.events())
        touched = self.touched
        if touched:
            self.touched = []
            for stream in touched:
                try:
                    stream.data_done()
                except Exception as exc:
                    self._stream_failed(stream.stream_id, exc)
        self._batching = False
        self._write_now()

    def _dispatch(self, events: list[Event]) -> None:
        handlers = _HANDLERS
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                try:
                    handler(self, event)
                except Exception as exc:  # the gateway's own failure: that stream's, not the connection's
                    self._stream_failed(getattr(event, "stream_id", 0), exc)

    def _stream_failed(self, stream_id: int, exc: Exception) -> None:
        self.worker.log_internal_error("request handling failed", exc)
        stream = self.streams.get(stream_id)
        if stream is None or stream.closed:
            return
        exchange, stream.exchange = stream.exchange, DISCARD
        exchange.client_lost()
        if stream.ctx is not None and not stream._response_started:
            stream.reply(stream.ctx, 500, "internal error while handling the request")
        else:
            stream.abort()

    def eof_received(self) -> bool | None:
        return None  # the client closed: so does the connection (streams in flight are lost)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.worker.connections.discard(self)
        streams = list(self.streams.values())
        self.streams.clear()
        self.paused.clear()
        for stream in streams:
            stream.connection_lost()

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in list(self.streams.values()):
            stream.pause_writing()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            stream.resume_writing()

    # ------------------------------------------------------------------ events

    def _on_request(self, event: RequestReceived) -> None:
        stream_id = event.stream_id
        if stream_id > self._last_stream_id:
            self._last_stream_id = stream_id
        if self._goaway or len(self.streams) >= self.limits.http2_max_concurrent_streams:
            # Draining, or over SETTINGS_MAX_CONCURRENT_STREAMS: refused, safe to retry.
            self.h2.reset_stream(stream_id, REFUSED_STREAM)
            return
        self.deadline = 0.0
        stream = Http2Stream(self, stream_id)
        self.streams[stream_id] = stream
        stream.begin(event.headers, event.end_stream)

    def _on_data(self, event: DataReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is None:
            self.acknowledge(event.stream_id, len(event.data))
            return
        stream.request_data(event.data)
        if event.end_stream:
            stream.request_end()

    def _on_trailers(self, event: TrailersReceived) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.request_end()  # request trailers are not forwarded

    def _on_reset(self, event: StreamReset) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream.reset()

    def _on_closed(self, event: StreamClosed) -> None:
        stream = self.streams.pop(event.stream_id, None)
        if stream is not None:
            if not stream._response_done:
                stream._lost()
            stream._finish()
        if not self.streams:
            if self._goaway:
                self._ending = True
            else:
                self.deadline = self.loop.time() + self.worker.runtime.limits.idle_timeout

    def _on_window(self, event: WindowUpdated) -> None:
        if event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream.window_opened()
        else:
            for stream in list(self.streams.values()):
                stream.window_opened()

    def _on_goaway(self, event: GoAwayReceived) -> None:
        if event.error_code:
            self._close(abort=True)  # an error: nothing more will be read
        else:
            self._goaway = True  # the client opens no more streams; those open finish
            if not self.streams:
                self._ending = True

    def _on_connection_closed(self, event: ConnectionClosed) -> None:
        self._ending = True

    def _on_ping_ack(self, event: PingAcknowledged) -> None:
        self._ping_sent = 0.0

    # ------------------------------------------------------------------ used by streams

    def trusted(self, limits: ServerLimits) -> bool:
        """Whether the peer is a trusted proxy (its forwarded headers are believed)."""
        if self._trust_limits is not limits:
            self._trust_limits = limits
            self._trusted = is_trusted(self.client_ip, limits.trusted_proxies)
        return self._trusted

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size:
            with contextlib.suppress(NGH2Error, ValueError):  # a stream nghttp2 already forgot
                self.h2.acknowledge_received_data(size, stream_id)

    def write(self) -> None:
        """Send what nghttp2 has queued: at the end of the client read being handled; else now
        when one stream is open, and once the loop has handled the other ready sockets when
        several are (the responses of several upstreams go out in one write)."""
        if self._batching or self.closed:
            return
        if len(self.streams) > 1:
            if not self._write_due:
                self._write_due = True
                self.loop.call_soon(self._write_now)
            return
        self._write_now()

    def _write_now(self) -> None:
        """Send what nghttp2 has queued, then handle what sending changed (streams closed)."""
        self._write_due = False
        if self._batching or self.closed:
            return
        h2 = self.h2
        transport = self.transport
        self._batching = True
        try:
            for _ in range(8):  # bounded: each round handles what the previous one caused
                try:
                    data = h2.data_to_send()
                except NGH2Error:
                    # The engine gave up on the connection (a flood, a header list past its cap)
                    # and has nothing more to send, not even a GOAWAY: cut it.
                    self._ending = False
                    self._close(abort=True)
                    return
                if data and transport is not None:
                    transport.write(data)
                if self.closing:
                    self._reset_finished()
                events = h2.events()
                if not events:
                    break
                self._dispatch(events)
        finally:
            self._batching = False
        if self.paused and not self.write_paused:
            for stream in list(self.paused):
                stream.window_opened()
        if self._ending:
            self._close()

    def _reset_finished(self) -> None:
        """Streams whose response is out while their request is not: RST_STREAM NO_ERROR."""
        waiting = []
        for stream in self.closing:
            if stream.closed or stream._request_done:
                continue
            if self.h2.queued_body_size(stream.stream_id):
                waiting.append(stream)
            else:
                stream._reset_stream(NO_ERROR)
        self.closing = waiting

    # ------------------------------------------------------------------ worker

    def check_deadline(self, now: float) -> None:
        """Called by the worker's sweep: stream deadlines, an idle connection, keep-alive pings."""
        for stream in list(self.streams.values()):
            stream.check(now)
        if self.deadline and now >= self.deadline and not self.streams:
            self.close_if_idle()
            return
        interval = self.limits.http2_keepalive_interval
        if interval and not self.closed:
            if self._ping_sent:
                if now - self._ping_sent >= self.limits.http2_keepalive_timeout:
                    self._close(abort=True)  # the client stopped answering
            elif now - self._last_read >= interval:
                self._ping_sent = now
                self.h2.ping(b"agw-ping")
                self.write()

    def settings_changed(self, limits: ServerLimits) -> bool:
        """Whether a reloaded config advertises other HTTP/2 settings than this connection did."""
        return _settings_of(limits) != _settings_of(self.limits)

    def retire(self, reason: str) -> None:
        self.close_if_idle()  # (no tunnels over HTTP/2: CONNECT is refused)

    def close_if_idle(self) -> bool:
        """Draining (or idle): GOAWAY, so the client opens no more streams; the streams open
        finish, then the connection closes."""
        if self.closed:
            return True
        if not self._goaway:
            self._goaway = True
            with contextlib.suppress(NGH2Error):
                self.h2.send_goaway(NO_ERROR, last_stream_id=self._last_stream_id)
            if not self.streams:
                self._ending = True
            self._write_now()
        elif not self.streams:
            self._close()
        return self.closed

    def _close(self, abort: bool = False) -> None:
        if self.closed:
            return
        self.closed = True
        self.worker.connections.discard(self)
        transport = self.transport
        if transport is not None:
            if abort:
                transport.abort()
            else:
                transport.close()


def _settings_of(limits: ServerLimits) -> tuple[object, ...]:
    return (
        limits.http2_window_size,
        limits.http2_connection_window_size,
        limits.http2_frame_size,
        limits.http2_max_concurrent_streams,
        limits.http2_max_header_size or limits.max_header_size,
        limits.http2_keepalive_interval,
        limits.http2_keepalive_timeout,
    )


_HANDLERS: dict[type[Event], Callable[[Http2Connection, Event], None]] = {
    RequestReceived: Http2Connection._on_request,  # type: ignore[dict-item]
    DataReceived: Http2Connection._on_data,  # type: ignore[dict-item]
    TrailersReceived: Http2Connection._on_trailers,  # type: ignore[dict-item]
    StreamReset: Http2Connection._on_reset,  # type: ignore[dict-item]
    StreamClosed: Http2Connection._on_closed,  # type: ignore[dict-item]
    WindowUpdated: Http2Connection._on_window,  # type: ignore[dict-item]
    GoAwayReceived: Http2Connection._on_goaway,  # type: ignore[dict-item]
    ConnectionClosed: Http2Connection._on_connection_closed,  # type: ignore[dict-item]
    PingAcknowledged: Http2Connection._on_ping_ack,  # type: ignore[dict-item]
}
