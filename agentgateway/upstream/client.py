"""An async HTTP/1.1 client over the gateway's upstream pools, for the gateway's own calls.

The data path proxies with callbacks (``forward.py``); this client is for requests the gateway
makes itself: MCP upstream calls, and later token fetches and external services. It shares the
pools (keep-alive, TLS identity in the pool key) and the connection protocol. Bodies can be
read whole or as a stream of chunks (server-sent events); reading is paused while the consumer
lags, so a long stream never piles up in memory.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator

from agentgateway.upstream.backend_auth import BackendAuth, BackendAuthError, Outbound, edit_headers
from agentgateway.upstream.http1 import Headers, UpstreamConnection
from agentgateway.upstream.pool import UpstreamConnectError, UpstreamPool
from agentgateway.upstream.target import HttpTarget

_BUFFER_HIGH = 256 * 1024
_DEFAULT_MAX_BODY = 16 * 1024 * 1024
# Waits of at least this long (an MCP call's 300 s) are not each given a timer: setting and
# cancelling one costs ~2 µs a request; one sweep a period expires them, late by less than a
# period, nothing against such a wait.
_SWEPT_TIMEOUT = 60.0
_SWEEP_PERIOD = 1.0


class HttpClientError(Exception):
    """The request failed before a complete response arrived; ``message`` is fit for a log or an
    error answer, ``status`` the HTTP status a proxy would answer with (502/503/504)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class ClientResponse:
    """One response. Use ``read()`` or iterate ``chunks()``; ``close()`` abandons the rest."""

    __slots__ = (
        "status",
        "headers",
        "_conn",
        "_pool",
        "_chunks",
        "_buffered",
        "_done",
        "_failed",
        "_waiter",
        "_keep_alive",
        "_paused",
        "_request_sent",
    )

    def __init__(self, pool: UpstreamPool, conn: UpstreamConnection) -> None:
        self.status = 0
        self.headers: Headers = []
        self._conn: UpstreamConnection | None = conn
        self._pool = pool
        self._chunks: deque[bytes] = deque()
        self._buffered = 0
        self._done = False
        self._failed: HttpClientError | None = None
        self._waiter: asyncio.Future[None] | None = None
        self._keep_alive = False
        self._paused = False
        self._request_sent = True

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    @property
    def content_type(self) -> bytes:
        value = self.header(b"content-type") or b""
        return value.split(b";", 1)[0].strip().lower()

    def whole_body(self, limit: int = _DEFAULT_MAX_BODY) -> bytes | None:
        """The body, when all of it has arrived already (most small answers come with their
        head): no coroutine to run. None: ``read`` it."""
        if not self._done or self._failed is not None or self._buffered > limit:
            return None
        chunks = self._chunks
        if len(chunks) == 1:
            self._buffered = 0
            return chunks.popleft()
        if not chunks:
            return b""
        return None

    async def read(self, limit: int = _DEFAULT_MAX_BODY) -> bytes:
        # A plain loop rather than ``async for`` over ``chunks()``: an async generator costs a
        # registration with the loop per call, and most answers are whole when the head arrives.
        parts: list[bytes] = []
        size = 0
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                size += len(chunk)
                if size > limit:
                    self.close()
                    raise HttpClientError(502, f"response body larger than {limit} bytes")
                parts.append(chunk)
                if self._paused and self._buffered < _BUFFER_HIGH // 2 and self._conn is not None:
                    self._paused = False
                    self._conn.resume_reading()
            if self._failed is not None:
                raise self._failed
            if self._done:
                return parts[0] if len(parts) == 1 else b"".join(parts)
            self._waiter = self._pool.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    @property
    def buffered(self) -> bool:
        """Body chunks have arrived that ``chunks()`` has not yielded yet: a relay that writes
        what it has can wait for them and write once (one read of an upstream often carries
        many events of a stream; a write per event cost a system call each)."""
        return bool(self._chunks)

    async def chunks(self) -> AsyncIterator[bytes]:
        while True:
            while self._chunks:
                chunk = self._chunks.popleft()
                self._buffered -= len(chunk)
                if self._paused and self._buffered < _BUFFER_HIGH // 2 and self._conn is not None:
                    self._paused = False
                    self._conn.resume_reading()
                yield chunk
            if self._failed is not None:
                raise self._failed
            if self._done:
                return
            self._waiter = self._pool.loop.create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None

    def close(self) -> None:
        """Stop reading: an unfinished response makes the connection unusable, so it is closed."""
        conn = self._conn
        self._conn = None
        if conn is not None and not self._done:
            conn.abort()
        self._done = True
        self._wake()

    # ------------------------------------------------------------------ UpstreamSink

    def upstream_head(self, status: int, headers: Headers) -> None:
        self.status = status
        self.headers = headers
        self._wake()

    def upstream_body(self, chunk: bytes) -> None:
        self._chunks.append(chunk)
        self._buffered += len(chunk)
        if self._buffered > _BUFFER_HIGH and not self._paused and self._conn is not None:
            self._paused = True
            self._conn.pause_reading()
        self._wake()

    def upstream_trailers(self, trailers: Headers) -> None:
        pass

    def upstream_end(self, keep_alive: bool) -> None:
        conn = self._conn
        self._conn = None
        self._done = True
        if conn is not None:
            if keep_alive and self._request_sent:
                self._pool.release(conn)
            else:
                conn.close()
        self._wake()

    def upstream_failed(self, status: int, message: str) -> None:
        self._conn = None
        self._failed = HttpClientError(status, message)
        self._wake()

    def upstream_write_paused(self) -> None:
        pass

    def upstream_write_resumed(self) -> None:
        pass

    def upstream_data_done(self) -> None:
        pass

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)


# Methods a server may receive twice with the effect of once (RFC 9110 §9.2.2): the only ones
# the stale-connection retry sends again (policy/retry.py has the same set; this layer is below).
_IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


class HttpClient:
    """Requests over the worker's pools. One retry on a fresh connection when a pooled one turns
    out to be closed before any byte of the response arrived (the upstream dropped it idle), for
    idempotent methods only: HTTP/1.1 cannot tell a connection closed idle from one closed after
    the request was acted on, and a POST (an MCP ``tools/call``, a webhook) must not run twice."""

    def __init__(self, pool: UpstreamPool) -> None:
        self.pool = pool
        # Responses awaited with a far deadline (``_SWEPT_TIMEOUT``), checked by one timer.
        self._far: dict[ClientResponse, float] = {}
        self._sweeper: asyncio.TimerHandle | None = None

    async def request(
        self,
        target: HttpTarget,
        method: bytes,
        path: bytes,
        headers: Headers | bytes = (),  # type: ignore[assignment]
        body: bytes | None = None,
        timeout: float | None = None,
    ) -> ClientResponse:
        """Send a request and wait for the response head (the body is read from the response).
        ``headers`` must not include Host or Content-Length (they are added); they may come
        encoded already (``encode_headers``: a caller sending the same ones each time encodes
        them once). The target's ``backendAuth`` is applied here."""
        auth = target.auth
        if auth is not None:
            if isinstance(headers, bytes):
                headers = decode_headers(headers)
            path, headers = await _authorize(target, auth, method, path, headers, body)
        head = _request_head(target, method, path, headers, body)
        payload = head + body if body else head
        loop = self.pool.loop  # (asyncio.get_running_loop() costs a getpid system call on 3.11)
        deadline = None if timeout is None else loop.time() + timeout
        try:
            for attempt in range(2):
                conn = self.pool.take(target) if attempt == 0 else None
                if conn is None:
                    async with asyncio.timeout_at(deadline):  # (a new connection: rare once warm)
                        conn = await self.pool.connect(target)
                response = ClientResponse(self.pool, conn)
                conn.begin(response, method == b"HEAD")
                conn.write(payload)
                # One timer for the wait, not a timeout scope (a task-cancelling context costs
                # more than the rest of a pooled request); a far deadline shares the sweep's.
                timer = None
                if deadline is not None:
                    if timeout is not None and timeout >= _SWEPT_TIMEOUT:
                        self._far[response] = deadline
                        if self._sweeper is None:
                            self._sweeper = loop.call_later(_SWEEP_PERIOD, self._sweep, loop)
                    else:
                        timer = loop.call_at(deadline, _expire, response)
                try:
                    while not response.status:  # (the head: a loop here, not a coroutine of its own)
                        if response._failed is not None:
                            raise response._failed
                        response._waiter = loop.create_future()
                        try:
                            await response._waiter
                        finally:
                            response._waiter = None
                    if response._failed is not None and not response._chunks and not response._done:
                        raise response._failed
                except _TimedOut:
                    response.close()  # the connection is in the middle of a response: not reusable
                    raise TimeoutError from None
                except HttpClientError:
                    if conn.reused and not conn.received and attempt == 0 and method in _IDEMPOTENT:
                        continue
                    raise
                finally:
                    if timer is not None:
                        timer.cancel()
                    elif deadline is not None:
                        self._far.pop(response, None)
                return response
        except TimeoutError:
            within = f" within {timeout:g}s" if timeout is not None else ""
            raise HttpClientError(504, f"{target.label} did not answer{within}") from None
        except UpstreamConnectError as exc:
            raise HttpClientError(503, exc.message) from None
        raise AssertionError("unreachable")

    def _sweep(self, loop: asyncio.AbstractEventLoop) -> None:
        """Expire the far deadlines that have passed; again in a period while any is awaited."""
        now = loop.time()
        far = self._far
        for response, deadline in list(far.items()):
            if deadline <= now:
                del far[response]
                _expire(response)
        self._sweeper = loop.call_later(_SWEEP_PERIOD, self._sweep, loop) if far else None


class _TimedOut(HttpClientError):
    """The request's time ran out before the response head arrived (``HttpClient.request``)."""


def _expire(response: ClientResponse) -> None:
    if not response.status and response._failed is None:
        response._failed = _TimedOut(504, "")
        response._wake()


async def _authorize(
    target: HttpTarget, auth: BackendAuth, method: bytes, path: bytes, headers: Headers, body: bytes | None
) -> tuple[bytes, Headers]:
    try:
        if not auth.ready(None):
            await auth.prepare(None)
        out = Outbound(
            method, b"https" if target.tls else b"http", target.host_header, path, list(headers), body or b""
        )
        path, edits = auth.apply(out)
    except BackendAuthError as exc:
        raise HttpClientError(500, f"backend authentication for {target.label} failed: {exc}") from None
    return path, edit_headers(list(headers), edits)


def encode_headers(headers: Headers) -> bytes:
    """Header lines as ``_request_head`` writes them (for ``HttpClient.request``)."""
    return b"".join(b"%s: %s\r\n" % header for header in headers)


def decode_headers(lines: bytes) -> Headers:
    """``encode_headers`` undone (backendAuth edits headers as a list)."""
    return [(name, value) for name, _, value in (line.partition(b": ") for line in lines.split(b"\r\n") if line)]


def _request_head(
    target: HttpTarget, method: bytes, path: bytes, headers: Headers | bytes, body: bytes | None
) -> bytes:
    parts = [method, b" ", path, b" HTTP/1.1\r\nhost: ", target.host_header, b"\r\n"]
    if isinstance(headers, bytes):
        parts.append(headers)
    else:
        for name, value in headers:
            parts += (name, b": ", value, b"\r\n")
    if body is not None:
        parts.append(b"content-length: %d\r\n" % len(body))
    parts.append(b"\r\n")
    return b"".join(parts)
