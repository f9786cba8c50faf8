"""What every upstream MCP transport shares: id assignment, pending calls, routing of what the
server sends (responses to their call; notifications and server requests to the call they belong
to, or to the session), and the initialize handshake."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from agentgateway._native import scan_jsonrpc
from agentgateway.mcp import protocol
from agentgateway.mcp.config import McpTargetSpec
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.mcp.upstream import tracing

log = logging.getLogger("agentgateway.mcp")

# Where server messages that belong to a call go (progress, logging, server requests); the
# federation layer rewrites them for the client.
RelatedSink = Callable[[Message], Awaitable[None]]


# A response as decoded, and its bytes when the transport had them (to pass results on unparsed).
Response = tuple[Message, bytes | None]


class PendingCall:
    __slots__ = ("future", "sink", "progress_token", "method", "asking")

    def __init__(
        self, future: asyncio.Future[Response], sink: RelatedSink | None, progress_token: Any, method: str
    ) -> None:
        self.future = future
        self.sink = sink
        self.progress_token = progress_token
        self.method = method
        # Ids of the server's requests about this call that are not answered yet.
        self.asking: set[str | int] = set()


class UpstreamSession:
    """One upstream MCP session held for one downstream session (or shared, for stateless use).

    Subclasses implement ``_connect`` (make the transport ready), ``_send`` (deliver one message;
    for transports where a request opens its own response stream, they feed ``_incoming`` with
    the call as the related context) and ``_close``.
    """

    __slots__ = (
        "spec",
        "name",
        "on_session_message",
        "protocol_version",
        "init_result",
        "init_params",
        "_ids",
        "_loop",
        "_pending",
        "_lock",
        "closed",
    )

    def __init__(self, spec: McpTargetSpec, on_session_message: RelatedSink) -> None:
        self.spec = spec
        self.name = spec.name
        self.on_session_message = on_session_message
        self.protocol_version = protocol.LATEST_LEGACY
        self.init_result: dict[str, Any] | None = None
        self.init_params: dict[str, Any] | None = None
        self._ids = itertools.count(1)
        # The loop its calls run on, learned at the first (asyncio.get_running_loop() makes a
        # getpid system call on 3.11, to notice a fork: once, not per call).
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pending: dict[int, PendingCall] = {}
        self._lock: asyncio.Lock | None = None  # made by the first handshake (idle sessions hold many of these)
        self.closed = False

    # ------------------------------------------------------------------ lifecycle

    async def initialize(self, params: dict[str, Any], timeout: float = 30.0) -> dict[str, Any]:
        """The legacy handshake with the client's parameters (version, capabilities, info), so
        the upstream sees what the client declared."""
        self.init_params = params
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            await self._connect()
        result = await self.call("initialize", params, None, timeout=timeout)
        version = result.get("protocolVersion")
        if version not in protocol.LEGACY_VERSIONS:
            # A version MCP does not define (a client would disconnect, as the spec says), and
            # in a federation the lowest version answered becomes the session's: one target
            # could make every client refuse the gateway. Only this target's handshake fails.
            raise McpError(
                protocol.INTERNAL_ERROR,
                f"MCP target {self.name} answered initialize with protocol version "
                f"{protocol.shown(version)}, which this gateway does not speak",
            )
        assert isinstance(version, str)
        self.init_result = result
        self.protocol_version = version
        await self._before_initialized()
        await self.notify("notifications/initialized", None)
        return result

    async def reinitialize(self) -> None:
        """Start over with a fresh upstream session (after it expired or the process died)."""
        if self.init_params is None:
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name} was never initialized")
        await self._reset()
        await self.initialize(self.init_params)

    async def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._fail_pending(McpError(protocol.INTERNAL_ERROR, f"session with MCP target {self.name} closed"))
        await self._close()

    # ------------------------------------------------------------------ messages

    async def call(
        self,
        method: str,
        params: dict[str, Any] | None,
        sink: RelatedSink | None,
        timeout: float | None = None,
        track: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Send a request and wait for its result (raises McpError for an error answer).
        ``track`` learns the upstream request id (to cancel it later)."""
        response, _ = await self.request(method, params, sink, timeout, track)
        value = response.get("result")
        if not isinstance(value, dict):
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name} answered {method} without a result object")
        return value

    async def call_raw(
        self, method: str, params: dict[str, Any] | None, sink: RelatedSink | None, timeout: float | None = None
    ) -> bytes:
        """``call``, returning the result object's JSON as the upstream wrote it."""
        response, raw = await self.request(method, params, sink, timeout)
        if raw is not None:
            result = scan_jsonrpc(raw).result
            if result is not None:
                return result
        value = response.get("result")
        if not isinstance(value, dict):
            raise McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name} answered {method} without a result object")
        return orjson.dumps(value)

    def _request_id(self, track: Callable[[int], None] | None) -> int:
        """The id of a new request on this open session, told to ``track`` (cancellation maps it)."""
        if self.closed:
            raise McpError(protocol.INTERNAL_ERROR, f"session with MCP target {self.name} is closed")
        id_ = next(self._ids)
        if track is not None:
            track(id_)
        return id_

    async def request(
        self,
        method: str,
        params: dict[str, Any] | None,
        sink: RelatedSink | None,
        timeout: float | None = None,
        track: Callable[[int], None] | None = None,
    ) -> Response:
        """The response message to a request (an error answer raises McpError)."""
        id_ = self._request_id(track)
        loop = self._loop
        if loop is None:
            loop = self._loop = asyncio.get_running_loop()
        future: asyncio.Future[Response] = loop.create_future()
        token = None
        if params:
            meta = params.get("_meta")
            if isinstance(meta, dict) and "progressToken" in meta:
                # Tokens must be unique among the requester's requests, and the gateway is the
                # requester here (sessions may be shared by clients): ours go upstream, the
                # client's comes back in the relayed notifications.
                token = meta["progressToken"]
                params = {**params, "_meta": {**meta, "progressToken": f"agw-{id_}"}}
        call = PendingCall(future, sink, token, method)
        self._pending[id_] = call
        span, params = tracing.start_call(method, params, self.name, id_)
        try:
            await self._send(protocol.request(id_, method, params), call)
            response = await asyncio.wait_for(future, timeout) if timeout else await future
        except TimeoutError:
            await self._cancel_upstream(id_, "timeout")
            error = McpError(protocol.INTERNAL_ERROR, f"MCP target {self.name} did not answer {method} in time")
            if span is not None:
                tracing.end_call(span, None, error)
            raise error from None
        except BaseException as exc:
            if span is not None:
                tracing.end_call(span, None, exc)
            if isinstance(exc, asyncio.CancelledError):
                await self._cancel_upstream(id_, "the client went away")
            raise
        finally:
            self._pending.pop(id_, None)
        if "error" in response[0]:
            failure = protocol.error_from_message(response[0])
            if span is not None:
                tracing.end_call(span, None, failure)
            raise failure
        if span is not None:
            tracing.end_call(span, response[0], None)
        return response

    async def notify(self, method: str, params: dict[str, Any] | None) -> None:
        traceparent = tracing.current_traceparent()
        if traceparent is not None:
            params = tracing.with_traceparent(params, traceparent)
        await self._send(protocol.notification(method, params), None)

    async def respond(self, id_: Any, value: dict[str, Any] | None = None, err: McpError | None = None) -> None:
        """Answer a request the server sent (sampling, elicitation, roots)."""
        if isinstance(id_, str | int):
            for call in self._pending.values():
                call.asking.discard(id_)
        msg = protocol.error(id_, err) if err is not None else protocol.result(id_, value or {})
        await self._send(msg, None)

    async def cancel(self, upstream_id: int, reason: str) -> None:
        await self._cancel_upstream(upstream_id, reason)

    # ------------------------------------------------------------------ incoming

    def _answered(self, msg: Message, raw: bytes | None) -> bool:
        """``msg`` is a response (given to the call waiting for it, if any): True; a request or
        a notification (for ``_incoming``): False."""
        if not protocol.is_response(msg):
            return False
        # The gateway's ids are ints: an id of another kind (a list or an object, which cannot be
        # looked up; true or 1.0, which equal 1) answers no call of its.
        answer_id = msg.get("id")
        call = self._pending.get(answer_id) if type(answer_id) is int else None
        if call is not None and not call.future.done():
            call.future.set_result((msg, raw))
        return True

    async def _incoming(self, msg: Message, related: PendingCall | None, raw: bytes | None = None) -> None:
        """Route one message from the server (``raw``: its bytes, if the transport has them).
        ``related`` is the call whose response stream it arrived on, when the transport knows
        (streamable HTTP); otherwise it is inferred."""
        if self._answered(msg, raw):
            return
        params = msg.get("params")
        if msg.get("method") == "notifications/progress" and isinstance(params, dict):
            related = self._pending.get(_progress_call(params.get("progressToken")))  # type: ignore[arg-type]
            if related is None:
                return  # progress for a request that is over: dropped, as the spec allows
            msg = {**msg, "params": {**params, "progressToken": related.progress_token}}
        elif related is None:
            related = self._infer_related(msg)
        if related is not None and protocol.is_request(msg) and isinstance(msg["id"], str | int):
            related.asking.add(msg["id"])
        sink = related.sink if related is not None else None
        if sink is not None:
            await sink(msg)
        else:
            await self.on_session_message(msg)

    def _infer_related(self, msg: Message) -> PendingCall | None:
        """For transports with one shared stream (stdio, legacy SSE), what is not progress goes to
        the only call in flight, if there is exactly one (else to the session's stream). A call
        whose server request is still unanswered does not count: its handler is waiting for that
        answer (perhaps for good, when a stateless client never finished an input_required round)
        and is not the one speaking."""
        calls = [c for c in self._pending.values() if c.method != "initialize" and not c.asking]
        return calls[0] if len(calls) == 1 else None

    @staticmethod
    def _fail_call(call: PendingCall, message: str) -> None:
        if not call.future.done():
            call.future.set_result((protocol.error(None, McpError(protocol.INTERNAL_ERROR, message)), None))

    def _fail_pending(self, err: McpError) -> None:
        for call in list(self._pending.values()):
            if not call.future.done():
                call.future.set_result((protocol.error(None, err), None))

    async def _cancel_upstream(self, upstream_id: int, reason: str) -> None:
        if self.closed:
            return
        try:
            await self.notify("notifications/cancelled", {"requestId": upstream_id, "reason": reason})
        except (McpError, OSError) as exc:
            log.debug("could not cancel request %s on %s: %s", upstream_id, self.name, exc)

    # ------------------------------------------------------------------ transport hooks

    async def _connect(self) -> None:
        raise NotImplementedError

    async def _send(self, msg: Message, call: PendingCall | None) -> None:
        raise NotImplementedError

    async def _close(self) -> None:
        raise NotImplementedError

    async def _reset(self) -> None:
        """Drop the transport state so the next ``_connect`` starts afresh."""
        raise NotImplementedError

    async def _before_initialized(self) -> None:
        """The handshake's answer arrived; ``notifications/initialized`` is sent next."""


def _progress_call(token: object) -> int | None:
    """The request id behind a progress token the gateway issued (``agw-<id>``). The server
    writes the token back: ``str.isdigit`` also takes ``²`` (which ``int`` refuses) and any
    number of digits (``int`` refuses over 4,300), so only ASCII digits of an id's length are."""
    if isinstance(token, str) and token.startswith("agw-"):
        digits = token[4:]
        if 0 < len(digits) <= 20 and digits.isascii() and digits.isdigit():
            return int(digits)
    return None
