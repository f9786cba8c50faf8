"""HTTP/1.1 client side of one upstream connection (httptools response parser).

The connection knows nothing about clients: it reports the response to its current *sink*
(the exchange that sent the request) and returns to its pool when the exchange says so.
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Protocol, cast

import httptools

if TYPE_CHECKING:
    from agentgateway.upstream.pool import UpstreamPool

log = logging.getLogger("agentgateway.upstream")

Headers = list[tuple[bytes, bytes]]

_WRITE_HIGH_WATER = 256 * 1024
_WRITE_LOW_WATER = 64 * 1024


class UpstreamSink(Protocol):
    """Receives one response. ``upstream_end`` says whether the connection may be reused."""

    def upstream_head(self, status: int, headers: Headers) -> None: ...

    def upstream_body(self, chunk: bytes) -> None: ...

    def upstream_trailers(self, trailers: Headers) -> None:
        """Trailer fields, before ``upstream_end`` (HTTP/2 upstreams: gRPC's status)."""

    def upstream_end(self, keep_alive: bool) -> None: ...

    def upstream_failed(self, status: int, message: str) -> None: ...

    def upstream_write_paused(self) -> None: ...

    def upstream_write_resumed(self) -> None: ...

    def upstream_data_done(self) -> None:
        """One read from the upstream has been parsed: flush what it produced to the client."""


class UpgradeSink(UpstreamSink, Protocol):
    """A sink whose request asked to switch protocols (``Upgrade``): a ``101`` answer hands it
    the connection itself, which then never returns to the pool."""

    def upstream_switched(self, headers: Headers, transport: asyncio.Transport, early: bytes) -> None:
        """The upstream answered ``101`` with ``headers``; ``early`` are the bytes it sent after
        that head (the first bytes of the new protocol). The sink owns ``transport`` now."""


class UpstreamConnection(asyncio.Protocol):
    __slots__ = (
        "pool",
        "key",
        "label",
        "transport",
        "parser",
        "sink",
        "reused",
        "unprocessed",
        "received",
        "idle_since",
        "closed",
        "_headers",
        "_response_headers",
        "_head_done",
        "_interim",
        "_no_body",
        "_replace_parser",
        "_write_paused",
        "reading_paused",
        "_upgrade",
        "_switching",
        "parsing",
        "release_due",
        "_stray",
    )

    def __init__(self, pool: UpstreamPool, key: tuple[object, ...], label: str) -> None:
        self.pool = pool
        self.key = key
        self.label = label
        self.transport: asyncio.Transport | None = None
        self.parser = httptools.HttpResponseParser(self)
        self.sink: UpstreamSink | None = None
        # Taken from the pool (not fresh): a failure before any byte arrives may just be the
        # upstream closing an idle keep-alive connection, which is safe to retry.
        self.reused = False
        # HTTP/1.1 has no way to say a request was not acted on (HTTP/2's REFUSED_STREAM and
        # GOAWAY do): once written, a request may have been processed whatever happens next.
        self.unprocessed = False
        self.received = False
        self.idle_since = 0.0
        self.closed = False
        self._headers: Headers = []
        self._response_headers: Headers = []  # of the response being received
        self._head_done = False
        self._interim = False
        self._no_body = False
        self._replace_parser = False
        self._write_paused = False
        self.reading_paused = False
        # The sink of a request that asked to switch protocols, and whether its 101 arrived
        # (the head was parsed; the parser stops right after it).
        self._upgrade: UpgradeSink | None = None
        self._switching = False
        # A read is being parsed; a release asked for meanwhile (the response ended inside it)
        # waits for the end of that read (``release_due``), and happens only if nothing in it
        # followed the response (``_stray``: the upstream is out of step with the requests).
        self.parsing = False
        self.release_due = False
        self._stray = False

    # ------------------------------------------------------------------ used by exchanges

    def begin(self, sink: UpstreamSink, no_body: bool) -> None:
        """Start a request/response cycle; ``no_body`` for HEAD requests, whose responses carry
        framing headers but no body (the parser cannot know that by itself)."""
        self.sink = sink
        self.received = False
        self._head_done = False
        self._no_body = no_body
        self._upgrade = None
        if self._write_paused:
            sink.upstream_write_paused()

    def begin_upgrade(self, sink: UpgradeSink) -> None:
        """``begin`` for a request that asks to switch protocols: a ``101`` answer makes the
        connection the sink's (``upstream_switched``), any other is an ordinary response."""
        self.begin(sink, False)
        self._upgrade = sink

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def pause_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = True
            self.transport.pause_reading()

    def resume_reading(self) -> None:
        if self.transport is not None and not self.closed:
            self.reading_paused = False
            self.transport.resume_reading()

    def close(self) -> None:
        self.sink = None
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.close()

    def abort(self) -> None:
        self.sink = None
        if not self.closed:
            self.closed = True
            self.pool.forget(self)
            if self.transport is not None:
                self.transport.abort()

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        stream = cast(asyncio.Transport, transport)
        stream.set_write_buffer_limits(_WRITE_HIGH_WATER, _WRITE_LOW_WATER)
        self.transport = stream

    def data_received(self, data: bytes) -> None:
        self.received = True
        if self.sink is None:
            # Bytes on an idle connection: the upstream is out of sync; never reuse it.
            self.close()
            return
        sink = self.sink
        self.parsing = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as exc:
            self.parsing = False
            # llhttp stops right after a 101 head that names the protocol switched to.
            if self._switching:
                self._switch(data[exc.args[0] if exc.args else len(data) :])
                return
            self._fail_invalid("it switched protocols unasked")
            return
        except httptools.HttpParserError as exc:
            self.parsing = False
            if self._switching or self.parser.get_status_code() == 101:
                # A 101 without Upgrade/Connection names no protocol (RFC 9110 §15.2.2).
                self._fail_invalid("101 Switching Protocols without an Upgrade header")
                return
            current = self.sink
            self.abort()
            if isinstance(exc, httptools.HttpParserCallbackError) and exc.__context__ is not None:
                # Not the upstream's fault: the code handling its response failed.
                log.error("handling the response of %s failed", self.label, exc_info=exc.__context__)
            if current is not None:
                current.upstream_failed(502, f"invalid response from upstream {self.label}: {exc}")
            return
        self.parsing = False
        sink.upstream_data_done()
        if self._replace_parser:
            self._replace_parser = False
            self.parser = httptools.HttpResponseParser(self)
        if self.release_due:
            self.release_due = False
            if self._stray:
                # Bytes followed the response in the same read (the start of another response,
                # one to a request not sent, a body on a HEAD answer): never reused, or they
                # would be parsed as the answer to the next request, another client's.
                self.close()
            else:
                self.pool.release(self)
        elif self._stray and self.sink is None:
            self.close()

    def _switch(self, early: bytes) -> None:
        """The upstream switched protocols: the connection leaves the pool for good and goes to
        the sink with the bytes that followed the 101 head."""
        sink = self._upgrade
        transport = self.transport
        self.sink = None
        self._upgrade = None
        self._switching = False
        self.closed = True
        self.pool.forget(self)
        if sink is None or transport is None:
            if transport is not None:
                transport.abort()
            return
        sink.upstream_switched(self._response_headers, transport, early)

    def _fail_invalid(self, why: str) -> None:
        current = self.sink
        self._switching = False
        self.abort()
        if current is not None:
            current.upstream_failed(502, f"invalid response from upstream {self.label}: {why}")

    def eof_received(self) -> bool | None:
        return None  # close; connection_lost reports what it means

    def connection_lost(self, exc: Exception | None) -> None:
        was_closed = self.closed
        self.closed = True
        if not was_closed:
            self.pool.forget(self)
        sink = self.sink
        self.sink = None
        if sink is None:
            return
        if self._head_done:
            # A body delimited by the end of the connection ends here; any other framing was
            # cut short.
            if self._close_delimited():
                sink.upstream_end(False)
            else:
                sink.upstream_failed(502, f"upstream {self.label} closed the connection mid-response")
        else:
            reason = f": {exc}" if exc else ""
            sink.upstream_failed(502, f"upstream {self.label} closed the connection before responding{reason}")

    def pause_writing(self) -> None:
        self._write_paused = True
        if self.sink is not None:
            self.sink.upstream_write_paused()

    def resume_writing(self) -> None:
        self._write_paused = False
        if self.sink is not None:
            self.sink.upstream_write_resumed()

    # ------------------------------------------------------------------ httptools callbacks

    def on_message_begin(self) -> None:
        # Each response starts with headers of its own: trailer fields (llhttp reports them
        # as headers after the body) never become the next response's headers.
        self._headers = []
        if self.sink is None:
            self._stray = True  # a response to no request in flight

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.lower(), value))

    def on_headers_complete(self) -> None:
        status = self.parser.get_status_code()
        if 100 <= status < 200 and status != 101:
            # Interim responses (100 Continue, 103 Early Hints) are not relayed.
            self._interim = True
            self._headers = []
            return
        if status == 101:
            # Switching protocols: the sink hears of it once the parser stops after the head
            # (``data_received``), with the bytes that followed. Unasked, it is invalid.
            self._response_headers = self._headers
            self._headers = []
            self._switching = self._upgrade is not None
            return
        self._head_done = True
        headers = self._response_headers = self._headers
        self._headers = []  # the next response starts afresh (no on_message_begin callback)
        sink = self.sink
        if sink is None:
            return
        sink.upstream_head(status, headers)
        if self._no_body and self.sink is sink:
            # The answer to HEAD has no body whatever its headers say; the parser would wait
            # for one, so it is replaced before the connection is reused.
            self._replace_parser = True
            self.sink = None
            sink.upstream_end(self._keep_alive_after_head())

    def on_body(self, body: bytes) -> None:
        sink = self.sink
        if sink is not None:
            sink.upstream_body(body)
        else:
            self._stray = True  # a body on an answer that has none (HEAD)

    def on_message_complete(self) -> None:
        if self._interim:
            self._interim = False
            return
        if self.parser.get_status_code() == 101:
            return  # the end of a 101 head: data_received switches (or fails) next
        sink = self.sink
        if sink is None:
            return
        self.sink = None
        sink.upstream_end(self.parser.should_keep_alive())

    # ------------------------------------------------------------------ internals

    def _close_delimited(self) -> bool:
        for name, value in self._response_headers:
            if name == b"content-length" or (name == b"transfer-encoding" and b"chunked" in value.lower()):
                return False
        return True

    def _keep_alive_after_head(self) -> bool:
        for name, value in self._response_headers:
            if name == b"connection" and b"close" in value.lower():
                return False
        return self.parser.get_http_version() == "1.1"
