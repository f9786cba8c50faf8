"""HTTP/2 client side of upstream connections: requests multiplexed over pooled connections.

An ``Http2Upstream`` is one connection (h2c with prior knowledge, or TLS with ALPN h2) carrying
many streams, its protocol state kept by libnghttp2 (``core/http2.py``); ``Http2Pool`` keeps a
few per upstream and opens streams on one with room (the upstream's
SETTINGS_MAX_CONCURRENT_STREAMS), connecting another when none has. A stream,
``Http2UpstreamStream``, is what an exchange holds while its request is in flight: the same
calls as an HTTP/1.1 ``UpstreamConnection`` (``begin``, ``write``, ``pause_reading``, ``abort``,
...) plus the request head and end, and its response reaches the same ``UpstreamSink``, trailers
included (``upstream_trailers``: gRPC's status). Back-pressure is flow control: a paused stream
stops acknowledging what it received, so the upstream stops sending on it; request bytes beyond
the upstream's window wait in nghttp2 and past a high-water mark pause the client.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, cast

from ngh2 import (
    ConnectionClosed,
    DataReceived,
    Event,
    GoAwayReceived,
    NGH2Error,
    ResponseReceived,
    SettingsReceived,
    StreamClosed,
    StreamReset,
    TrailersReceived,
    WindowUpdated,
)

from agentgateway.core.http2 import CANCEL, REFUSED_STREAM, error_name, local_settings, new_connection
from agentgateway.upstream.http1 import Headers
from agentgateway.upstream.pool import UpstreamConnectError

if TYPE_CHECKING:
    from agentgateway.upstream.http1 import UpstreamSink
    from agentgateway.upstream.target import HttpTarget

log = logging.getLogger("agentgateway.upstream")

_WRITE_HIGH_WATER = 256 * 1024
_WRITE_LOW_WATER = 64 * 1024
_STREAM_HIGH_WATER = 256 * 1024
_STREAM_LOW_WATER = 64 * 1024
# What the gateway accepts from an upstream before acknowledging it (it acknowledges as it hands
# bytes to the client, so these bound what one stream or connection may have in flight).
_STREAM_WINDOW = 1024 * 1024
_CONNECTION_WINDOW = 8 * 1024 * 1024


class Http2UpstreamStream:
    """One request on an ``Http2Upstream``: the exchange's handle on it."""

    __slots__ = (
        "conn",
        "stream_id",
        "sink",
        "reused",
        "unprocessed",
        "received",
        "closed",
        "reading_paused",
        "_local_ended",
        "_remote_ended",
        "_write_paused",
        "_unacked",
        "_touched",
    )

    def __init__(self, conn: Http2Upstream, reused: bool) -> None:
        self.conn = conn
        self.stream_id = 0  # given when the head is sent
        self.sink: UpstreamSink | None = None
        # On a connection that served before (it may have gone stale while idle).
        self.reused = reused
        # The upstream certainly did not act on the request: it refused the stream, its GOAWAY
        # named a lower last stream, or the request was never sent. Only then is a request of any
        # method safe to send again; a stream merely cut (a reset, the connection lost) may
        # have been processed.
        self.unprocessed = False
        self.received = False
        self.closed = False
        self.reading_paused = False
        self._local_ended = False
        self._remote_ended = False
        self._write_paused = False
        self._unacked = 0
        self._touched = False

    # ------------------------------------------------------------------ used by exchanges

    def begin(self, sink: UpstreamSink, no_body: bool) -> None:
        self.sink = sink

    def send_head(self, headers: Headers, end_stream: bool) -> None:
        """The request head (pseudo-headers first); ``end_stream`` when there is no body. Past
        the upstream's stream limit nghttp2 holds it until a stream ends."""
        conn = self.conn
        if conn.closed:
            self._fail(f"upstream {conn.label} closed the connection before the request was sent")
            return
        try:
            self.stream_id = conn.h2.send_request(headers, end_stream=end_stream)
        except NGH2Error as exc:
            self.unprocessed = True  # not sent: safe to send elsewhere
            self._fail(f"upstream {conn.label} refused a new stream: {exc}")
            return
        conn.streams[self.stream_id] = self
        self._local_ended = end_stream
        conn.write()

    def write(self, data: bytes) -> None:
        if self.closed or self._local_ended or not data:
            return
        conn = self.conn
        conn.h2.send_data(self.stream_id, data)
        if conn.h2.queued_body_size(self.stream_id) > _STREAM_HIGH_WATER:
            # Past the mark, what nghttp2 holds is sent now: only the upstream's window (or the
            # socket's buffer) may keep it queued, and both wake the stream when they open. A
            # pause decided on data merely waiting for the deferred flush had nothing to end it.
            conn.flush()
        else:
            conn.write()
        if conn.h2.queued_body_size(self.stream_id) > _STREAM_HIGH_WATER and not self._write_paused:
            self._write_paused = True
            conn.paused.add(self)
            if self.sink is not None:
                self.sink.upstream_write_paused()

    def end_request(self) -> None:
        """The request body is complete (END_STREAM after what waits for the window)."""
        if self.closed or self._local_ended:
            return
        self._local_ended = True
        self.conn.h2.end_stream(self.stream_id)
        self.conn.write()

    def pause_reading(self) -> None:
        self.reading_paused = True

    def resume_reading(self) -> None:
        self.reading_paused = False
        if self._unacked and not self.closed:
            unacked, self._unacked = self._unacked, 0
            self.conn.acknowledge(self.stream_id, unacked)
            self.conn.write()

    def close(self) -> None:
        """The exchange is done with the stream: cancelled if either side is still open."""
        self.sink = None
        if not self.closed:
            if not (self._local_ended and self._remote_ended):
                self._reset(CANCEL)
            self._forget()

    def abort(self) -> None:
        self.close()

    # ------------------------------------------------------------------ the connection's events

    def _head(self, headers: tuple[tuple[bytes, bytes], ...], end_stream: bool) -> None:
        status = 0
        fields: Headers = []
        for name, value in headers:
            if name == b":status":
                status = int(value)
            elif name[:1] != b":":
                fields.append((name, value))
        self.received = True
        sink = self.sink
        if sink is not None:
            sink.upstream_head(status, fields)
        if end_stream:
            self._end()

    def _data(self, data: bytes, end_stream: bool) -> None:
        if data:
            if self.reading_paused:
                self._unacked += len(data)
            else:
                self.conn.acknowledge(self.stream_id, len(data))
            sink = self.sink
            if sink is not None:
                sink.upstream_body(data)
        if end_stream:
            self._end()

    def _trailers(self, headers: tuple[tuple[bytes, bytes], ...]) -> None:
        sink = self.sink
        if sink is not None:
            sink.upstream_trailers([(n, v) for n, v in headers if n[:1] != b":"])
        self._end()

    def _end(self) -> None:
        self._remote_ended = True
        if not self.received:
            self._fail(f"upstream {self.conn.label} ended the stream without a response")
            return
        sink = self.sink
        if sink is not None:
            self.sink = None
            # The connection is the pool's, never the exchange's: a stream is never "kept alive".
            sink.upstream_end(False)

    def _reset_by_peer(self, code: int) -> None:
        if code == REFUSED_STREAM and not self.received:
            self.unprocessed = True  # the upstream did not process it (RFC 9113 §8.7)
        self._fail(f"upstream {self.conn.label} reset the stream ({error_name(code)})")

    def _closed(self, code: int) -> None:
        """nghttp2 closed the stream; a response not complete by then has failed."""
        if self.sink is not None and not self._remote_ended:
            self._fail(f"upstream {self.conn.label} closed the stream ({error_name(code)})")
        else:
            self._forget()

    def _fail(self, message: str) -> None:
        self._forget()
        sink = self.sink
        self.sink = None
        if sink is not None:
            sink.upstream_failed(502, message)

    def _window_opened(self) -> None:
        """Resume the client if what waits for the upstream's window is below the low-water mark:
        on a window update, and after every write (what waited may leave with a write that follows
        the update, and a peer whose window is now wide sends no further update to wait for)."""
        conn = self.conn
        if (
            self._write_paused
            and not conn.write_paused
            and conn.h2.queued_body_size(self.stream_id) < _STREAM_LOW_WATER
        ):
            self._write_paused = False
            conn.paused.discard(self)
            if self.sink is not None:
                self.sink.upstream_write_resumed()

    def _reset(self, code: int) -> None:
        if self.stream_id and not self.conn.closed:
            with contextlib.suppress(NGH2Error):
                self.conn.h2.reset_stream(self.stream_id, code)
            self.conn.write()

    def _forget(self) -> None:
        self.closed = True
        self.conn.paused.discard(self)
        if self._unacked:
            unacked, self._unacked = self._unacked, 0
            self.conn.acknowledge(self.stream_id, unacked)  # the connection's window, for others
        self.conn.forget(self)


class Http2Upstream(asyncio.Protocol):
    """One HTTP/2 connection to an upstream and its streams."""

    __slots__ = (
        "pool",
        "key",
        "label",
        "transport",
        "h2",
        "streams",
        "paused",
        "closed",
        "write_paused",
        "idle_since",
        "served",
        "spoke",
        "goaway",
        "_batching",
        "_write_due",
        "_ending",
        "_touched",
    )

    def __init__(self, pool: Http2Pool, key: tuple[object, ...], label: str) -> None:
        self.pool = pool
        self.key = key
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.h2 = new_connection(client=True, header_list_cap=1024 * 1024)
        self.streams: dict[int, Http2UpstreamStream] = {}
        self.paused: set[Http2UpstreamStream] = set()  # streams whose client is paused
        self.closed = False
        self.write_paused = False
        self.idle_since = 0.0
        self.served = False  # some stream was opened on it (a failure later is "reused")
        self.spoke = False  # the upstream sent its SETTINGS: it speaks HTTP/2
        self.goaway = False  # the upstream said it takes no new streams
        self._batching = False
        self._write_due = False  # a flush is scheduled for when the loop has run what is ready
        self._ending = False
        self._touched: list[Http2UpstreamStream] = []

    def available(self) -> bool:
        """Open, not told to go away, and with room for another stream."""
        return not self.closed and not self.goaway and self.h2.can_send_request

    def open_stream(self) -> Http2UpstreamStream:
        stream = Http2UpstreamStream(self, self.served)
        self.served = True
        return stream

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        stream = cast(asyncio.Transport, transport)
        stream.set_write_buffer_limits(_WRITE_HIGH_WATER, _WRITE_LOW_WATER)
        self.transport = stream
        h2 = self.h2
        h2.initiate_connection(local_settings(_STREAM_WINDOW, 16_384))
        h2.set_local_window_size(_CONNECTION_WINDOW)
        self.write()

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        h2 = self.h2
        try:
            h2.receive_data(data)
        except NGH2Error as exc:
            self.flush()  # the GOAWAY nghttp2 queued
            self._lost(f"invalid HTTP/2 from upstream {self.label}: {exc}")
            return
        self._batching = True
        self._dispatch(h2.events())
        touched = self._touched
        if touched:
            self._touched = []
            for stream in touched:
                stream._touched = False
                sink = stream.sink
                if sink is not None:
                    try:
                        sink.upstream_data_done()
                    except Exception as exc:
                        self._sink_failed(stream, exc)
        self._batching = False
        self.flush()

    def _dispatch(self, events: list[Event]) -> None:
        handlers = _HANDLERS
        for event in events:
            handler = handlers.get(type(event))
            if handler is not None:
                try:
                    handler(self, event)
                except Exception as exc:  # the gateway's code handling the response, not the upstream
                    self._sink_failed(self.streams.get(getattr(event, "stream_id", 0)), exc)

    def _sink_failed(self, stream: Http2UpstreamStream | None, exc: Exception) -> None:
        log.error("handling the response of %s failed", self.label, exc_info=exc)
        if stream is not None:
            stream._reset(CANCEL)
            stream._fail(f"invalid response from upstream {self.label}: {exc!r}")

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        reason = f": {exc}" if exc else ""
        self._lost(f"upstream {self.label} closed the connection{reason}")

    def pause_writing(self) -> None:
        self.write_paused = True
        for stream in list(self.streams.values()):
            if not stream._write_paused:
                stream._write_paused = True
                self.paused.add(stream)
                if stream.sink is not None:
                    stream.sink.upstream_write_paused()

    def resume_writing(self) -> None:
        self.write_paused = False
        for stream in list(self.streams.values()):
            stream._window_opened()

    # ------------------------------------------------------------------ events

    def _stream(self, stream_id: int) -> Http2UpstreamStream | None:
        stream = self.streams.get(stream_id)
        if stream is not None and not stream._touched:
            stream._touched = True
            self._touched.append(stream)
        return stream

    def _on_response(self, event: ResponseReceived) -> None:
        stream = self._stream(event.stream_id)
        if stream is not None:
            stream._head(event.headers, event.end_stream)

    def _on_data(self, event: DataReceived) -> None:
        stream = self._stream(event.stream_id)
        if stream is None:
            self.acknowledge(event.stream_id, len(event.data))
        else:
            stream._data(event.data, event.end_stream)

    def _on_trailers(self, event: TrailersReceived) -> None:
        stream = self._stream(event.stream_id)
        if stream is not None:
            stream._trailers(event.headers)

    def _on_reset(self, event: StreamReset) -> None:
        stream = self._stream(event.stream_id)
        if stream is not None:
            stream._reset_by_peer(event.error_code)

    def _on_closed(self, event: StreamClosed) -> None:
        stream = self.streams.get(event.stream_id)
        if stream is not None:
            stream._closed(event.error_code)
            self.forget(stream)

    def _on_window(self, event: WindowUpdated) -> None:
        if event.stream_id:
            stream = self.streams.get(event.stream_id)
            if stream is not None:
                stream._window_opened()
        else:
            for stream in list(self.streams.values()):
                stream._window_opened()

    def _on_settings(self, event: SettingsReceived) -> None:
        self.spoke = True

    def _on_goaway(self, event: GoAwayReceived) -> None:
        self.goaway = True
        self.pool.forget(self)  # no new stream goes here
        last = event.last_stream_id
        for stream in list(self.streams.values()):
            if stream.stream_id > last and not stream.received:
                # Not processed by the upstream (RFC 9113 §6.8): safe to send again elsewhere.
                stream.unprocessed = True
                stream._fail(f"upstream {self.label} is going away (GOAWAY)")
        if event.error_code:
            self._lost(f"upstream {self.label} ended the connection ({error_name(event.error_code)})")
        elif not self.streams:
            self._ending = True

    def _on_connection_closed(self, event: ConnectionClosed) -> None:
        self._ending = True

    # ------------------------------------------------------------------ used by streams and the pool

    def acknowledge(self, stream_id: int, size: int) -> None:
        if size:
            with contextlib.suppress(NGH2Error, ValueError):
                self.h2.acknowledge_received_data(size, stream_id)

    def write(self) -> None:
        """Send what nghttp2 has queued once the loop has run what is ready: the head, body and
        end of a request, and the requests of every stream a client read started, leave in one
        write (a write per call cost a system call each, most of the proxy's time per request)."""
        if self._batching or self.closed or self._write_due:
            return
        self._write_due = True
        self.pool.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Send what nghttp2 has queued now, and handle what sending changed."""
        self._write_due = False
        if self._batching or self.closed:
            return
        h2 = self.h2
        self._batching = True
        try:
            for _ in range(8):  # bounded: each round handles what the previous one caused
                data = h2.data_to_send()
                if data and self.transport is not None:
                    self.transport.write(data)
                events = h2.events()
                if not events:
                    break
                self._dispatch(events)
        finally:
            self._batching = False
        if self.paused and not self.write_paused:
            for stream in list(self.paused):
                stream._window_opened()
        if self._ending:
            self.close()

    def forget(self, stream: Http2UpstreamStream) -> None:
        if self.streams.pop(stream.stream_id, None) is not None and not self.streams:
            if self.goaway:
                self._ending = True
            else:
                self.idle_since = self.pool.loop.time()

    def close(self) -> None:
        if self.closed:
            return
        self.pool.forget(self)
        if self.transport is not None and not self._ending:
            with contextlib.suppress(NGH2Error):
                self.h2.send_goaway(0)
            data = self.h2.data_to_send()
            if data:
                self.transport.write(data)
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def _lost(self, message: str) -> None:
        if not self.spoke:
            message = (
                f"upstream {self.label} does not speak HTTP/2 (no SETTINGS before it closed); check its http.version"
            )
        was_closed = self.closed
        self.closed = True
        self.pool.forget(self)
        if not was_closed and self.transport is not None:
            self.transport.abort()
        streams = list(self.streams.values())
        self.streams.clear()
        for stream in streams:
            stream._fail(message)


_HANDLERS: dict[type[Event], Callable[[Http2Upstream, Event], None]] = {
    ResponseReceived: Http2Upstream._on_response,  # type: ignore[dict-item]
    DataReceived: Http2Upstream._on_data,  # type: ignore[dict-item]
    TrailersReceived: Http2Upstream._on_trailers,  # type: ignore[dict-item]
    StreamReset: Http2Upstream._on_reset,  # type: ignore[dict-item]
    StreamClosed: Http2Upstream._on_closed,  # type: ignore[dict-item]
    WindowUpdated: Http2Upstream._on_window,  # type: ignore[dict-item]
    SettingsReceived: Http2Upstream._on_settings,  # type: ignore[dict-item]
    GoAwayReceived: Http2Upstream._on_goaway,  # type: ignore[dict-item]
    ConnectionClosed: Http2Upstream._on_connection_closed,  # type: ignore[dict-item]
}


class Http2Pool:
    """HTTP/2 connections by upstream (host, port, TLS identity): a stream goes on the first with
    room; one connection attempt per upstream at a time is shared by every request waiting."""

    __slots__ = ("loop", "idle_timeout", "_conns", "_connecting")

    def __init__(self, loop: asyncio.AbstractEventLoop, idle_timeout: float) -> None:
        self.loop = loop
        self.idle_timeout = idle_timeout
        self._conns: dict[tuple[object, ...], list[Http2Upstream]] = {}
        self._connecting: dict[tuple[object, ...], asyncio.Task[Http2Upstream]] = {}

    def take(self, target: HttpTarget) -> Http2UpstreamStream | None:
        """A stream on a connection with room, or None (``open`` connects)."""
        for conn in self._conns.get(target.h2_pool_key, ()):
            if conn.available():
                return conn.open_stream()
        return None

    async def open(self, target: HttpTarget) -> Http2UpstreamStream:
        """A stream, connecting when no connection has room (raises UpstreamConnectError)."""
        key = target.h2_pool_key
        for _ in range(3):
            stream = self.take(target)
            if stream is not None:
                return stream
            task = self._connecting.get(key)
            if task is None:
                task = self._connecting[key] = self.loop.create_task(self._connect(target))
                task.add_done_callback(self._connected)
            conn = await asyncio.shield(task)
            if conn.available():
                return conn.open_stream()
        raise UpstreamConnectError(f"upstream {target.label} has no room for another HTTP/2 stream")

    def _connected(self, task: asyncio.Task[Http2Upstream]) -> None:
        for key, pending in list(self._connecting.items()):
            if pending is task:
                del self._connecting[key]
        if not task.cancelled():
            task.exception()  # seen here when every request that waited for it was cancelled

    async def _connect(self, target: HttpTarget) -> Http2Upstream:
        key = target.h2_pool_key
        label = target.label
        tls = target.tls_h2
        try:
            async with asyncio.timeout(target.connect_timeout):
                if tls is None:
                    transport, conn = await self.loop.create_connection(
                        lambda: Http2Upstream(self, key, label), target.host, target.port
                    )
                else:
                    transport, conn = await self.loop.create_connection(
                        lambda: Http2Upstream(self, key, label),
                        target.host,
                        target.port,
                        ssl=tls.context,
                        server_hostname=tls.server_hostname,
                    )
        except TimeoutError:
            raise UpstreamConnectError(
                f"upstream connect timeout: {label} did not accept within {target.connect_timeout:g}s"
            ) from None
        except ssl.SSLError as exc:
            raise UpstreamConnectError(f"upstream TLS error with {label}: {exc.reason or exc}") from None
        except OSError as exc:
            raise UpstreamConnectError(f"upstream connect error: {label}: {exc.strerror or exc}") from None
        if tls is not None:
            sslobj = transport.get_extra_info("ssl_object")
            if sslobj is None or sslobj.selected_alpn_protocol() != "h2":
                conn.close()
                raise UpstreamConnectError(f"upstream {label} does not speak HTTP/2 (TLS ALPN did not select h2)")
        conn.idle_since = self.loop.time()
        self._conns.setdefault(key, []).append(conn)
        return conn

    def forget(self, conn: Http2Upstream) -> None:
        conns = self._conns.get(conn.key)
        if conns and conn in conns:
            conns.remove(conn)
            if not conns:
                del self._conns[conn.key]

    def sweep(self, now: float) -> None:
        """Close connections without streams for longer than the idle timeout."""
        limit = now - self.idle_timeout
        for conns in list(self._conns.values()):
            for conn in list(conns):
                if not conn.streams and conn.idle_since < limit:
                    conn.close()

    def close_all(self) -> None:
        for conns in list(self._conns.values()):
            for conn in list(conns):
                conn.close()
        self._conns.clear()

    def connection_count(self) -> int:
        return sum(len(v) for v in self._conns.values())
