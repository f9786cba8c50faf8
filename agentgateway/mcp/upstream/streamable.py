"""Streamable HTTP MCP servers (legacy shape, 2025-03-26 … 2025-11-25): one POST per message,
answers as JSON or as an SSE stream, ``Mcp-Session-Id`` after initialize, an optional GET stream
for messages not tied to a request, DELETE to end the session.

An upstream that answers 404 for our session id has expired it: the session is initialized
again with the client's original parameters and the message sent once more, so the client never
sees the upstream's restart.

Every session of a worker sends over the worker's keep-alive pool (``upstream/pool.py``): a POST
takes an idle connection to the target, or opens one, and returns it when its answer is read,
so the calls of one session run concurrently and the connections serve every session (the
upstream session is a header, not a connection). ``ConnectionGate`` bounds how many requests
are in flight to one target at once (``config.mcp.maxUpstreamConnections``), hence how many
connections the pool opens to it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from typing import Any

import orjson

from agentgateway._native import SseDecoder
from agentgateway.mcp import protocol
from agentgateway.mcp.config import McpTargetSpec
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.mcp.upstream.base import PendingCall, RelatedSink, UpstreamSession
from agentgateway.mcp.upstream.tracing import meta_traceparent
from agentgateway.upstream.client import ClientResponse, HttpClient, HttpClientError, encode_headers

log = logging.getLogger("agentgateway.mcp.http")

_ACCEPT = (b"accept", b"application/json, text/event-stream")
_JSON = (b"content-type", b"application/json")
_MAX_EVENT = 64 * 1024 * 1024
_VISIBLE_ASCII = bytes(range(0x21, 0x7F))  # what an Mcp-Session-Id may hold
_CALL_TIMEOUT = 300.0
# Resuming a call's event stream the server closed (SEP-1699): consecutive failed resumptions
# allowed, the wait when the server named none (``retry:``), its bound, and how long resumed
# streams may bring no message before the call fails.
_RESUME_ATTEMPTS = 3
_DEFAULT_RETRY_MS = 1000
_MAX_RETRY_DELAY = 30.0
_RESUME_TIMEOUT = 30.0
_RESUME_STALL = _CALL_TIMEOUT
_LISTEN_WAIT = 5.0  # how long the handshake waits for the session stream to open (listen_early)


class ConnectionGate:
    """At most ``limit`` requests to one target in flight at once in this worker, each on a
    connection of its own (HTTP/1.1); the others wait their turn, first come first served. What
    is not a request does not count: the session streams (GET), which last as long as their
    sessions, and the client's notifications and answers (POSTs answered at once; an answer to
    a server's question must never wait behind the calls that wait for it)."""

    __slots__ = ("limit", "busy", "_waiting")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.busy = 0
        self._waiting: deque[asyncio.Future[None]] = deque()

    def take(self) -> bool:
        """Take a place if one is free now (no wait, no coroutine); False: ``acquire`` it."""
        if self.busy < self.limit and not self._waiting:
            self.busy += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.take():
            return
        turn: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiting.append(turn)
        try:
            await turn  # a release hands its place over (``busy`` unchanged)
        except asyncio.CancelledError:
            if turn.done() and not turn.cancelled():
                self.release()  # handed a place it will not use: on to the next
            raise

    def release(self) -> None:
        while self._waiting:
            turn = self._waiting.popleft()
            if not turn.done():
                turn.set_result(None)
                return
        self.busy -= 1


class StreamableHttpSession(UpstreamSession):
    __slots__ = (
        "client",
        "gate",
        "target",
        "session_id",
        "_streams",
        "_get_stream",
        "_get_ready",
        "listen_early",
        "_post_lines",
    )

    def __init__(
        self,
        spec: McpTargetSpec,
        on_session_message: RelatedSink,
        client: HttpClient,
        gate: ConnectionGate,
        session_id: bytes | None = None,
    ) -> None:
        super().__init__(spec, on_session_message)
        assert spec.http is not None
        self.client = client
        self.gate = gate
        self.target = spec.http
        self.session_id = session_id
        self._streams: set[asyncio.Task[None]] | None = None  # answers being read as event streams
        self._get_stream: asyncio.Task[None] | None = None
        self._get_ready: asyncio.Future[None] | None = None
        # Open the session stream before the handshake ends: a server may ask or announce at
        # once, and what it sends while no stream is open is lost (shared sessions, which have
        # no client stream to wait for).
        self.listen_early = False
        # The header lines of every POST, encoded once, with what they were made from.
        self._post_lines: tuple[object, bytes] = ((), b"")

    # ------------------------------------------------------------------ transport hooks

    async def _connect(self) -> None:
        pass  # nothing to open: every message is its own POST

    async def _reset(self) -> None:
        self.session_id = None
        self._stop_get_stream()

    async def _close(self) -> None:
        self._stop_get_stream()
        for task in list(self._streams or ()):
            task.cancel()
        if self.session_id is not None:
            await self.gate.acquire()
            try:
                with contextlib.suppress(HttpClientError, OSError):
                    response = await self.client.request(
                        self.target, b"DELETE", self.spec.path, self._headers(), None, timeout=5.0
                    )
                    response.close()
            finally:
                self.gate.release()

    async def _send(self, msg: Message, call: PendingCall | None, retried: bool = False) -> None:
        if await self._post(msg, call, may_restart=not retried):
            # The upstream forgot our session (restart, expiry): start a new one and resend.
            log.info("MCP target %s expired its session; initializing a new one", self.name)
            await self.reinitialize()
            await self._send(msg, call, retried=True)

    async def _post(self, msg: Message, call: PendingCall | None, may_restart: bool) -> bool:
        """POST one message and route the answer (an event stream is read by a task of its own);
        True, and nothing else done, when the upstream no longer knows our session."""
        body = orjson.dumps(msg)
        made_from = (self.session_id, self.init_result is not None, self.protocol_version)
        made, headers = self._post_lines
        if made != made_from:
            headers = encode_headers([_JSON, _ACCEPT, *self._headers()])
            self._post_lines = (made_from, headers)
        traceparent = meta_traceparent(msg)
        if traceparent is not None:
            headers += b"traceparent: %s\r\n" % traceparent.encode()  # the HTTP convention too
        gate = self.gate if "id" in msg and "method" in msg else None  # (requests only)
        if gate is not None and not gate.take():
            await gate.acquire()
        streaming = False  # the gate's place then goes with the event stream's reader
        try:
            try:
                response = await self.client.request(
                    self.target,
                    b"POST",
                    self.spec.path,
                    headers,
                    body,
                    timeout=_CALL_TIMEOUT,
                )
            except HttpClientError as exc:
                raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name}: {exc.message}") from None
            status = response.status
            method = msg.get("method")
            if method == "initialize" and status == 200:
                sid = response.header(b"mcp-session-id")
                if sid:
                    if sid.translate(None, _VISIBLE_ASCII):
                        # MCP session ids are visible ASCII; other bytes would not survive the
                        # session token (and a header sent back upstream): this target's
                        # handshake fails, not the whole federated session.
                        response.close()
                        raise McpError(
                            protocol.INTERNAL_ERROR,
                            f"MCP target {self.name} answered initialize with an Mcp-Session-Id "
                            "that is not visible ASCII",
                        )
                    self.session_id = sid
            if status == 404 and self.session_id is not None and may_restart and method != "initialize":
                response.close()
                return True
            if status == 202:
                response.close()
                return False
            kind = response.content_type
            if status == 200 and kind == b"text/event-stream":
                task = asyncio.get_running_loop().create_task(self._read_events(response, call))
                if gate is not None:
                    # The gate's place is the stream's until it ends (also when cancelled unstarted).
                    task.add_done_callback(lambda _: gate.release())
                    streaming = True
                if self._streams is None:
                    self._streams = set()
                self._streams.add(task)
                task.add_done_callback(self._streams.discard)
                return False
            try:
                raw = response.whole_body()
                if raw is None:
                    raw = await response.read()
            except HttpClientError as exc:
                raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name}: {exc.message}") from None
        finally:
            if gate is not None and not streaming:
                gate.release()
        if kind == b"application/json" and raw:
            try:
                decoded = orjson.loads(raw)
            except orjson.JSONDecodeError:
                decoded = None
            if isinstance(decoded, dict) and "jsonrpc" in decoded:
                if not self._answered(decoded, raw):
                    await self._incoming(decoded, call, raw)
            elif isinstance(decoded, list):  # a batch (2025-03-26)
                for item in decoded:
                    if isinstance(item, dict) and "jsonrpc" in item:
                        await self._incoming(item, call)
            if call is None or call.future.done():
                return False
            # Otherwise the JSON answered nothing (another shape, another id): the call can never
            # be answered on this POST, and would wait for its timeout.
        if call is not None and not call.future.done():
            text = raw[:300].decode("utf-8", "replace")
            self._fail_call(call, f"MCP target {self.name} answered HTTP {status}: {text}")
        return False

    async def _read_events(self, response: ClientResponse, call: PendingCall | None) -> None:
        """A response's event stream, to its end. A call's stream that ends before its answer is
        resumed when the server made it resumable (SEP-1699, 2025-11-25: a priming event with an
        ``id``, ``retry:`` before closing): after ``retry`` ms, GET with ``Last-Event-ID`` continues
        it, as often as the server closes it, while events keep coming."""
        last_id: str | None = None
        retry_ms: int | None = None
        failures = 0
        reason = ""
        deadline = asyncio.get_running_loop().time() + _RESUME_STALL
        current: ClientResponse | None = response
        try:
            while True:
                if current is not None:
                    decoder = SseDecoder(_MAX_EVENT, last_id or "")
                    received = await self._read_stream(current, call, decoder)
                    current = None
                    moved = (decoder.last_event_id or last_id) != last_id
                    last_id = decoder.last_event_id or last_id
                    retry_ms = decoder.retry if decoder.retry is not None else retry_ms
                    if received:
                        deadline = asyncio.get_running_loop().time() + _RESUME_STALL
                    if received or moved:
                        failures = 0
                    else:  # a resumed stream with nothing new: the server lost the stream
                        failures += 1
                        reason = "the resumed stream ended with nothing new"
                if call is None or call.future.done() or self.closed:
                    return
                if last_id is None:
                    self._fail_call(call, f"MCP target {self.name} closed the stream before answering")
                    return
                why = None
                if failures >= _RESUME_ATTEMPTS:
                    why = f"{failures} attempts to resume failed, the last: {reason}"
                elif asyncio.get_running_loop().time() > deadline:
                    why = f"nothing arrived for {_RESUME_STALL:g}s"
                if why is not None:
                    self._fail_call(
                        call,
                        f"MCP target {self.name} closed the stream before answering and it could not be resumed: {why}",
                    )
                    return
                delay = (retry_ms if retry_ms is not None else _DEFAULT_RETRY_MS) / 1000 * (2**failures)
                await asyncio.sleep(min(delay, _MAX_RETRY_DELAY))
                if call.future.done() or self.closed:
                    return
                resumed = await self._resume(last_id)
                if isinstance(resumed, str):
                    reason = resumed
                    failures += 1
                else:
                    current = resumed
        finally:
            if current is not None:
                current.close()

    async def _read_stream(self, response: ClientResponse, call: PendingCall | None, decoder: SseDecoder) -> int:
        """Route the messages of one event stream until it ends; how many there were."""
        received = 0
        try:
            async for chunk in response.chunks():
                for event in decoder.feed(chunk):
                    received += 1
                    if event.event != "message" or not event.data:
                        continue
                    try:
                        msg = orjson.loads(event.data)
                    except orjson.JSONDecodeError:
                        log.warning("MCP target %s sent a non-JSON event: %r", self.name, event.data[:200])
                        continue
                    if isinstance(msg, dict):
                        await self._incoming(msg, call, event.data)
        except (HttpClientError, ValueError) as exc:
            log.info("MCP target %s: event stream ended: %s", self.name, exc)
        finally:
            response.close()
        return received

    async def _resume(self, last_id: str) -> ClientResponse | str:
        """GET the stream again from after ``last_id``; why not, if the server would not."""
        headers = [(b"accept", b"text/event-stream"), (b"last-event-id", last_id.encode()), *self._headers()]
        try:
            response = await self.client.request(
                self.target, b"GET", self.spec.path, headers, None, timeout=_RESUME_TIMEOUT
            )
        except HttpClientError as exc:
            log.info("MCP target %s: resuming a stream failed: %s", self.name, exc.message)
            return exc.message
        if response.status != 200 or response.content_type != b"text/event-stream":
            log.info("MCP target %s: resuming a stream answered HTTP %d", self.name, response.status)
            response.close()
            return f"GET answered HTTP {response.status}"
        return response

    # ------------------------------------------------------------------ session stream (GET)

    def open_session_stream(self) -> asyncio.Future[None]:
        """Listen for messages not tied to a request (list changes, server requests); done once
        the server answered (with a stream or without)."""
        if self._get_stream is None or self._get_stream.done() or self._get_ready is None:
            loop = asyncio.get_running_loop()
            self._get_ready = loop.create_future()
            self._get_stream = loop.create_task(self._listen(self._get_ready))
        return self._get_ready

    async def _listen(self, ready: asyncio.Future[None]) -> None:
        try:
            response = await self.client.request(
                self.target,
                b"GET",
                self.spec.path,
                [(b"accept", b"text/event-stream"), *self._headers()],
                None,
            )
        except HttpClientError as exc:
            log.info("MCP target %s: no session stream: %s", self.name, exc.message)
            return
        finally:
            if not ready.done():
                ready.set_result(None)
        if response.status != 200 or response.content_type != b"text/event-stream":
            response.close()  # 405: the server has no such stream, which is allowed
            return
        await self._read_events(response, None)

    async def _before_initialized(self) -> None:
        if self.listen_early:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self.open_session_stream()), _LISTEN_WAIT)

    def _stop_get_stream(self) -> None:
        if self._get_stream is not None:
            self._get_stream.cancel()
            self._get_stream = None
        if self._get_ready is not None and not self._get_ready.done():
            self._get_ready.cancel()
        self._get_ready = None

    # ------------------------------------------------------------------ helpers

    def _headers(self) -> list[tuple[bytes, bytes]]:
        headers: list[tuple[bytes, bytes]] = []
        if self.session_id is not None:
            headers.append((b"mcp-session-id", self.session_id))
        if self.init_result is not None and self.protocol_version >= "2025-06-18":
            headers.append((b"mcp-protocol-version", self.protocol_version.encode()))
        return headers

    def state(self) -> dict[str, Any]:
        """What a session token carries to rebuild this session in another worker or replica."""
        return {"s": self.session_id.decode() if self.session_id else None, "v": self.protocol_version}
