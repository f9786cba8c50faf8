"""The MCP endpoint clients talk to: the exchange for routes whose backend is an MCP service.

One endpoint path serves every client generation:
- streamable HTTP, legacy shape: POST ``initialize`` → ``Mcp-Session-Id``; POST messages with it
  (answers as JSON, or as an SSE stream for calls that may send progress or server requests);
  GET with it for the session's own stream (``Last-Event-ID`` replays); DELETE ends it;
- the modern shape (2026-07-28): stateless POSTs carrying their ``_meta`` envelope;
- HTTP+SSE (2024-11-05): GET without a session opens an event stream whose first event names the
  URL to POST messages to (``?sessionId=``); answers arrive on the stream.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

import orjson

from agentgateway._native import encode_sse_comment, encode_sse_event
from agentgateway.core.jsonkeys import ambiguous_key, folded_names
from agentgateway.mcp import protocol
from agentgateway.mcp.authorization import CURRENT_CALLER, Caller
from agentgateway.mcp.config import McpService
from agentgateway.mcp.modern import check_envelope, decode_header_value, finish_result, is_modern
from agentgateway.mcp.origin import is_loopback_client, origin_problem
from agentgateway.mcp.protocol import McpError, Message
from agentgateway.mcp.runtime import Remote, SessionQuotaError
from agentgateway.mcp.session import StreamListener
from agentgateway.observe.tracing import CURRENT_TRACE, adopt_meta_traceparent, relayed_trace
from agentgateway.policy.chain import apply_response
from agentgateway.proxy.forward import HttpForward
from agentgateway.routing.route import CompiledRoute
from agentgateway.upstream.balance import WeightedChoice
from agentgateway.upstream.relay import BIND_HEADER, CEL_VARS_HEADER, IDENTITY_HEADER, TRACE_HEADER, relay_target

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import ResponseWriter
    from agentgateway.mcp.runtime import McpRuntime
    from agentgateway.mcp.session import DownstreamSession
    from agentgateway.upstream.target import HttpTarget

log = logging.getLogger("agentgateway.mcp")

_JSON = (b"content-type", b"application/json")
_SSE_HEADERS = [
    (b"content-type", b"text/event-stream"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]
_KEEPALIVE = 15.0
_ROUTING_HEADERS = frozenset((b"mcp-protocol-version", b"mcp-method", b"mcp-name"))
# What the names of the headers workers add to a relayed request start with (upstream/relay.py:
# BIND_HEADER, IDENTITY_HEADER, CEL_VARS_HEADER).
_INTERNAL_HEADERS = b"x-agentgateway-"
# JSON values a request id cannot be (None is checked apart; a tuple: ``a | b`` builds a union per call).
_NOT_ID_TYPES = (bool, float, list, dict)
# Calls that may stream progress, logging or server requests before their answer.
_STREAMING_METHODS = frozenset(("tools/call", "prompts/get", "resources/read", "completion/complete"))


# Names the gateway reads (and a case-insensitive server could read in another spelling): the
# envelope's, the params' a call is authorized and routed by, and a completion's ref's.
_ENVELOPE_NAMES = folded_names(("jsonrpc", "id", "method", "params", "result", "error"))
_PARAMS_NAMES = folded_names(("name", "uri", "ref", "arguments", "_meta", "cursor", "requestId"))
_REF_NAMES = folded_names(("type", "name", "uri"))


def _ambiguous_member(msg: Message) -> str | None:
    """A member name of the message (envelope, params, params.ref) that Go's encoding/json would
    take for another (core/jsonkeys.py): the params go upstream re-serialized with every name."""
    found = ambiguous_key(msg, _ENVELOPE_NAMES)
    params = msg.get("params")
    if found is None and isinstance(params, dict):
        found = ambiguous_key(params, _PARAMS_NAMES)
        ref = params.get("ref")
        if found is None and isinstance(ref, dict):
            found = ambiguous_key(ref, _REF_NAMES)
    return found


def _routing_header_mismatch(headers: list[tuple[bytes, bytes]], msg: Message) -> str | None:
    """Why the ``Mcp-Method`` / ``Mcp-Name`` headers of a message of the legacy shape disagree
    with its body, or None. It need not carry them, but one that does was maybe judged by them: a
    route policy (``request.headers["mcp-name"]``) runs before the body is read."""
    sent: dict[bytes, str] = {}
    for name, value in headers:
        if name == b"mcp-method" or name == b"mcp-name":
            if name in sent:
                return f"{name.decode()} header appears more than once"
            sent[name] = value.decode("latin-1")
    if not sent:
        return None
    method = msg.get("method")
    if b"mcp-method" in sent and sent[b"mcp-method"] != method:
        return "Mcp-Method header does not match the request's method"
    if b"mcp-name" in sent:
        params = msg.get("params")
        key = protocol.NAME_PARAM.get(method) if isinstance(method, str) else None
        named = params.get(key) if key is not None and isinstance(params, dict) else None
        if decode_header_value(sent[b"mcp-name"]) != named:
            return "Mcp-Name header does not match the request's params"
    return None


class McpExchange:
    """Serves one HTTP request on an MCP route (body buffered, then handled in a task)."""

    __slots__ = (
        "runtime",
        "conn",
        "ctx",
        "service",
        "route",
        "_body",
        "_size",
        "_limit",
        "_too_large",
        "_task",
        "_relay",
        "_listening",
        "_client_eof",
        "_resumed",
        "_first",
    )

    def __init__(
        self, runtime: McpRuntime, conn: ResponseWriter, ctx: RequestCtx, service: McpService, route: CompiledRoute
    ) -> None:
        self.runtime = runtime
        self.conn = conn
        self.ctx = ctx
        self.service = service
        self.route = route
        self._body: list[bytes] = []
        self._size = 0
        self._limit = runtime.worker.runtime.limits.max_buffer_size
        self._too_large = False
        self._task: asyncio.Task[None] | None = None
        # Set when the session lives in another worker: that worker answers through this one.
        self._relay: HttpForward | None = None
        # The listener an event stream (GET) is fed from, while one is served.
        self._listening: StreamListener | None = None
        self._client_eof = False
        # Resolved when the client's connection takes writes again (see ``_drained``).
        self._resumed: asyncio.Future[None] | None = None
        # Each header's first value, by name (one pass in C instead of a scan per header read).
        self._first: dict[bytes, bytes] = dict(reversed(ctx.headers))

    def start(self) -> None:
        if self.ctx.expect_continue:
            self.conn.send_continue()

    # ------------------------------------------------------------------ Exchange

    def request_body(self, chunk: bytes) -> None:
        self._size += len(chunk)
        if self._size > self._limit:
            self._too_large = True
            self._body.clear()
            return
        self._body.append(chunk)

    def request_end(self) -> None:
        # (The worker's loop, not asyncio.get_running_loop(): on 3.11 that makes a getpid system
        # call each time, to notice a fork.)
        self._task = self.runtime.worker.loop.create_task(self._serve())

    def client_write_paused(self) -> None:
        if self._relay is not None:
            self._relay.client_write_paused()
        # Otherwise the event writers wait in ``_drained`` before their next event.

    def client_write_resumed(self) -> None:
        if self._relay is not None:
            self._relay.client_write_resumed()
        if self._resumed is not None and not self._resumed.done():
            self._resumed.set_result(None)

    async def _drained(self) -> None:
        """Wait while the client reads slower than events are written. A target's messages are
        read from its stream only as fast as the client takes them: a target that floods a
        call's or the session's stream meets TCP back-pressure, not an ever-growing buffer in
        the gateway."""
        conn = self.conn
        while conn.write_paused and not conn.closed:
            if self._resumed is None or self._resumed.done():
                self._resumed = asyncio.get_running_loop().create_future()
            await self._resumed

    def client_lost(self) -> None:
        if self._task is not None:
            self._task.cancel()
        if self._relay is not None:
            self._relay.client_lost()

    def client_data_done(self) -> None:
        if self._relay is not None:
            self._relay.client_data_done()

    def client_eof(self) -> None:
        """The client half-closed its connection. One that only listens (an event stream) has
        gone: the stream ends now, not when a keep-alive finds the connection dead."""
        self._client_eof = True
        if self._listening is not None:
            self._listening.end()
        elif self._relay is not None and self.ctx.method == b"GET":
            self._relay.client_lost()
            self.conn.abort()

    # ------------------------------------------------------------------ dispatch

    async def _serve(self) -> None:
        CURRENT_CALLER.set(Caller(self.ctx))  # who is asking, for mcpAuthorization
        if self.ctx.trace is not None:
            CURRENT_TRACE.set(self.ctx.trace)  # the calls to targets are its spans
        try:
            await self._dispatch()
        except asyncio.CancelledError:
            raise
        except McpError as exc:
            self._jsonrpc_error(None, exc, 400)
        except Exception as exc:  # a bug must cost one request, not the worker
            log.exception("MCP request failed")
            self._jsonrpc_error(None, McpError(protocol.INTERNAL_ERROR, f"internal error: {exc}"), 500)

    def _cors_allows(self, origin: bytes, localhost_only: bool) -> bool:
        """The route's cors policy allows pages of ``origin``. Under the DNS-rebinding protection
        only an origin it names counts, not ``*`` (often copied from examples)."""
        for policy in self.route.chain.request:
            if policy.kind == "cors":
                if localhost_only and policy.any_origin:  # type: ignore[union-attr]
                    return False
                return bool(policy.allowed(origin))  # type: ignore[union-attr]
        return False

    def _rebinding_protected(self) -> bool:
        """Whether the DNS-rebinding protection applies: ``dnsRebindingProtection``, or unset, the
        client's address is a loopback one (mcp/origin.py)."""
        protect = self.service.dns_rebinding
        if protect is not None:
            return protect
        if self.conn.bind.internal:
            return False  # relayed by another worker of this gateway, which checked it
        # The client's address as the edge resolved it: the peer, or, behind a trusted proxy, the
        # client its X-Forwarded-For names (a browser on the proxy's machine is protected, a
        # remote client of that proxy is not).
        return is_loopback_client(self.ctx.client_ip)

    async def _dispatch(self) -> None:
        ctx = self.ctx
        first = self._first
        # A name no header repeats (the common case) was counted by building ``first``.
        repeated = len(first) != len(ctx.headers)
        if not self.conn.bind.internal:  # (a relayed request was checked by the worker it reached)
            if repeated:
                origins = [value for name, value in ctx.headers if name == b"origin"]
            else:
                origin = first.get(b"origin")
                origins = [] if origin is None else [origin]
            protect = self._rebinding_protected()
            if len(origins) == 1 and self._cors_allows(origins[0], protect):
                origins = []  # a page of an origin the route's cors policy allows
            problem = origin_problem(ctx.host, origins, first.get(b"x-forwarded-host"), protect)
            if repeated and sum(1 for name, _ in ctx.headers if name == b"host") > 1:
                # Malformed (RFC 9112): the check above read one of them, a proxy in front another.
                problem = "more than one Host header"
            if problem is not None:
                self._jsonrpc_error(None, McpError(protocol.INVALID_REQUEST, f"Forbidden: {problem}"), 403)
                return
        method = ctx.method
        token = first.get(b"mcp-session-id")
        if method == b"POST":
            if self._too_large:
                raise McpError(protocol.INVALID_REQUEST, f"message larger than {self._limit} bytes")
            query = parse_qs(ctx.query.decode("latin-1")) if ctx.query else {}
            if "sessionId" in query:
                sse_session = self._owned(self.runtime.lookup_sse(query["sessionId"][0], self.service, ctx.identity))
                if sse_session is not None:
                    await self._sse_transport_post(sse_session)
                return
            msg = self._decode()
            if (b"mcp-method" in first or b"mcp-name" in first) and (token is not None or not is_modern(msg)):
                # (the modern shape checks them itself)
                mismatch = _routing_header_mismatch(ctx.headers, msg)
                if mismatch is not None:
                    self._jsonrpc_error(msg.get("id"), McpError(protocol.HEADER_MISMATCH, mismatch), 400)
                    return
            if token is not None:
                session = self._owned(self.runtime.lookup(token.decode("latin-1"), self.service, ctx.identity))
                if session is not None:
                    await self._session_message(session, msg)
            elif msg.get("method") == "initialize":
                await (self._initialize(msg) if self.service.stateful else self._stateless_initialize(msg))
            elif is_modern(msg):
                await self._modern(msg)
            elif not self.service.stateful:
                await self._stateless(msg)
            else:
                raise McpError(protocol.INVALID_REQUEST, "Bad Request: no Mcp-Session-Id (send initialize first)")
        elif method == b"GET":
            if token is not None:
                session = self._owned(self.runtime.lookup(token.decode("latin-1"), self.service, ctx.identity))
                if session is not None:
                    await self._session_stream(session)
            elif self._accepts_sse():
                await self._sse_transport_open()
            else:
                self._status(405, (b"allow", b"POST, GET, DELETE"))
        elif method == b"DELETE":
            if token is None:
                raise McpError(protocol.INVALID_REQUEST, "Bad Request: DELETE needs Mcp-Session-Id")
            session = self._owned(self.runtime.lookup(token.decode("latin-1"), self.service, ctx.identity))
            if session is not None:
                await self.runtime.end(session)
                self._status(200)
        else:
            self._status(405, (b"allow", b"POST, GET, DELETE"))

    def _owned(self, found: DownstreamSession | Remote | None) -> DownstreamSession | None:
        """The session if this worker serves it. A session of another worker: the request is
        relayed there as it came (None returned). Unknown: 404 (None returned)."""
        if isinstance(found, Remote):
            target = relay_target(found.owner)
            if target is not None and not self.conn.bind.internal:
                self._relay_to(target)
                return None
            found = None
        if found is None:
            self._unknown_session()
        return found

    def _relay_to(self, target: HttpTarget) -> None:
        ctx = self.ctx
        ctx.relayed = True
        ctx.backend = target.label
        # The owner does not run the route's policies again: it is told who they proved the client
        # is, and on which bind the request came. Whatever the client sent under the names of these
        # internal headers is dropped, or the owner would read it (the bind it serves the request
        # on, the identity it serves it for).
        headers = [h for h in ctx.headers if not h[0].startswith(_INTERNAL_HEADERS)]
        ctx.headers = [*headers, (BIND_HEADER, str(self.conn.bind.port).encode())]
        if ctx.identity:
            ctx.headers.append((IDENTITY_HEADER, ctx.identity.encode().hex().encode()))
        if ctx.trace is not None:
            ctx.headers.append((TRACE_HEADER, relayed_trace(ctx.trace)))
        if ctx.cel_vars:
            try:
                encoded = base64.b64encode(orjson.dumps(ctx.cel_vars, default=str))
            except TypeError:
                encoded = b""
            if encoded:
                ctx.headers.append((CEL_VARS_HEADER, encoded))
        # The route's request policies ran here; the owner applies its response policies.
        relay_route = CompiledRoute(
            self.route.name, self.route.gateway, self.route.listener, WeightedChoice([(target, 1)])
        )
        forward = HttpForward(self.runtime.worker, self.conn, ctx, relay_route)
        self._relay = forward
        forward.start()
        for chunk in self._body:
            forward.request_body(chunk)
        forward.request_end()

    def _decode(self) -> Message:
        raw = b"".join(self._body)
        try:
            msg = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            raise McpError(protocol.PARSE_ERROR, f"Parse error: {exc}") from None
        if isinstance(msg, list):
            raise McpError(protocol.INVALID_REQUEST, "JSON-RPC batches are not supported (MCP 2025-06-18 removed them)")
        if not isinstance(msg, dict) or msg.get("jsonrpc") != "2.0":
            raise McpError(protocol.INVALID_REQUEST, "Invalid Request: not a JSON-RPC 2.0 message")
        ambiguous = _ambiguous_member(msg)
        if ambiguous is not None:
            raise McpError(
                protocol.INVALID_REQUEST,
                f"Invalid Request: member {protocol.shown(ambiguous)!r} is another spelling of one the gateway reads",
            )
        if "method" in msg:
            if not isinstance(msg["method"], str):
                raise McpError(protocol.INVALID_REQUEST, "Invalid Request: method must be a string")
            if "id" in msg and (msg["id"] is None or isinstance(msg["id"], _NOT_ID_TYPES)):
                raise McpError(protocol.INVALID_REQUEST, "Invalid Request: id must be a string or an integer")
            if "params" in msg and not isinstance(msg["params"], dict):
                raise McpError(protocol.INVALID_REQUEST, "Invalid Request: params must be an object")
        elif not ("result" in msg or "error" in msg) or "id" not in msg:
            raise McpError(
                protocol.INVALID_REQUEST, "Invalid Request: neither a request, a notification nor a response"
            )
        params = msg.get("params")
        if self.ctx.trace is not None and isinstance(params, dict) and isinstance(params.get("_meta"), dict):
            # A client's trace context in the message (before any target is called).
            adopt_meta_traceparent(self.ctx, params["_meta"].get("traceparent"))
        return msg

    # ------------------------------------------------------------------ legacy streamable HTTP

    async def _initialize(self, msg: Message) -> None:
        params = msg.get("params")
        if not isinstance(params, dict):
            raise McpError(protocol.INVALID_PARAMS, "initialize needs params")
        try:
            session = self.runtime.new_session(self.service, self.ctx.identity, self.ctx.client_ip)
        except SessionQuotaError as exc:
            self._jsonrpc_error(msg.get("id"), exc, exc.status)
            return
        try:
            result = await self.runtime.federation.initialize(session, params)
        except McpError as exc:
            self.runtime.discard(session.sid)
            self._json(200, protocol.error(msg.get("id"), exc))
            return
        token = self.runtime.seal(session)
        self.ctx.mcp_session = session.sid
        self._note(msg, None)
        self._json(200, protocol.result(msg.get("id"), result), ((b"mcp-session-id", token.encode()),))

    async def _stateless_initialize(self, msg: Message) -> None:
        """statefulMode stateless: no session id; the answer describes the worker's shared
        upstream sessions, which then serve every request of every client."""
        params = msg.get("params")
        requested = params.get("protocolVersion") if isinstance(params, dict) else None
        try:
            shared = await self.runtime.modern.shared_session(self.service)
        except McpError as exc:
            self._json(200, protocol.error(msg.get("id"), exc))
            return
        answer = dict(shared.init_answer)
        if requested in protocol.LEGACY_VERSIONS:
            answer["protocolVersion"] = min(str(requested), str(answer.get("protocolVersion", requested)))
        self._note(msg, None)
        self._json(200, protocol.result(msg.get("id"), answer))

    async def _stateless(self, msg: Message) -> None:
        shared = await self.runtime.modern.shared_session(self.service)
        if not protocol.is_request(msg):
            if protocol.is_notification(msg):
                await self.runtime.federation.client_notification(shared, msg)
            self._status(202)
            return

        async def nowhere(related: Message) -> None:
            # No session: progress and logging have nowhere to go, and a server's ask (it was
            # told the client can answer none) is refused at once rather than left waiting.
            if protocol.is_request(related):
                refusal = McpError(protocol.INVALID_REQUEST, "statefulMode stateless: the client cannot be asked")
                await self.runtime.federation.client_response(shared, protocol.error(related["id"], refusal))

        try:
            answer = protocol.result(msg["id"], await self.runtime.federation.request(shared, msg, nowhere))
        except McpError as exc:
            answer = protocol.error(msg["id"], exc)
        self._note(msg, shared)
        self._json(200, answer)

    async def _session_message(self, session: DownstreamSession, msg: Message) -> None:
        self.ctx.mcp_session = session.sid
        federation = self.runtime.federation
        if protocol.is_notification(msg):
            self._note(msg, None)
            await federation.client_notification(session, msg)
            self._status(202)
            return
        if protocol.is_response(msg):
            await federation.client_response(session, msg)
            self._status(202)
            return
        method = msg["method"]
        if method in _STREAMING_METHODS and self._accepts_sse():
            await self._answer_streaming(session, msg)
            return

        try:
            result = await federation.request(session, msg, session.to_stream)
            answer = protocol.result(msg["id"], result)
        except McpError as exc:
            answer = protocol.error(msg["id"], exc)
        self._note(msg, session)
        self._json(200, answer)

    async def _answer_streaming(self, session: DownstreamSession, msg: Message) -> None:
        """The answer as an SSE stream: what the server sends about the call, then the result.
        The head goes out with the first event, or after ``runtime.HEAD_WAIT`` when the call takes
        longer (the client then sees its stream start): most calls answer sooner, and their
        whole response is then one write instead of three."""
        self._head(200, _SSE_HEADERS, None, True)
        head_waits = self.runtime.head_waits
        head_waits.add(self, self.conn.flush)

        async def related(item: Message) -> None:
            self._event(protocol.dumps(item))
            await self._drained()

        try:
            result = await self.runtime.federation.request(session, msg, related)
            answer = protocol.result(msg["id"], result)
        except McpError as exc:
            answer = protocol.error(msg["id"], exc)
        finally:
            head_waits.withdraw(self)  # (before the response ends: the connection may serve another next)
        self._note(msg, session)
        self.conn.send_body(encode_sse_event(protocol.dumps(answer), "message", None))
        self.conn.end_response()

    async def _session_stream(self, session: DownstreamSession) -> None:
        """GET with a session: messages not tied to a request, until the client goes away."""
        self.ctx.mcp_session = session.sid
        last = self.ctx.header(b"last-event-id")
        listener = session.stream.attach(last.decode("latin-1") if last else None)
        for upstream in session.upstreams.values():
            opener = getattr(upstream, "open_session_stream", None)
            if opener is not None:
                opener()
        self._head(200, _SSE_HEADERS, None, True)
        self.conn.flush()
        try:
            await self._pump(listener)
        finally:
            session.stream.detach(listener)
            session.last_seen = time.monotonic()  # idle from now on, if no other request comes
        self.conn.end_response()

    async def _pump(self, listener: StreamListener) -> None:
        self._listening = listener
        while not self.conn.closed and not self._client_eof:
            await self._drained()
            try:
                item = await asyncio.wait_for(listener.get(), _KEEPALIVE)
            except TimeoutError:
                self.conn.send_body(encode_sse_comment(b"keep-alive"))
                self.conn.flush()
                continue
            if item is None:
                return
            event_id, data = item
            self._event(data, event_id)

    # ------------------------------------------------------------------ modern (2026-07-28)

    async def _modern(self, msg: Message) -> None:
        ctx = self.ctx
        headers: dict[str, str] = {}
        for name, value in ctx.headers:
            if name in _ROUTING_HEADERS:
                if name.decode() in headers:
                    raise_status = McpError(protocol.HEADER_MISMATCH, f"{name.decode()} header appears more than once")
                    self._jsonrpc_error(msg.get("id"), raise_status, 400)
                    return
                headers[name.decode()] = value.decode("latin-1")
        if not protocol.is_request(msg):
            self._status(202)  # modern clients send no notifications the gateway acts on
            return
        self._note(msg, None)
        try:
            check_envelope(msg, headers)
        except McpError as exc:
            self._jsonrpc_error(msg.get("id"), exc, protocol.ERROR_HTTP_STATUS.get(exc.code, 400))
            return
        params = msg.get("params")
        state = params.get("requestState") if isinstance(params, dict) else None
        if state is not None:
            owner = self.runtime.modern.state_owner(state, self.ctx.identity)
            if owner is not None and owner != self.runtime.owner_id:
                self._owned(Remote(owner))  # the parked call lives in that worker
                return
        streaming = self._accepts_sse() and msg.get("method") in _STREAMING_METHODS

        async def related(item: Message) -> None:
            if not streaming:
                return  # a JSON answer has nowhere to put notifications
            if self.conn.write_paused:
                # Behind: dropped, not waited for. The call may run on an upstream session
                # stateless clients share (one stdio or SSE stream for all their calls), which
                # one slow client must not hold still for the others.
                return
            if not self.ctx.status:
                self._head(200, _SSE_HEADERS, None, True)  # committed at the first notification
            self._event(protocol.dumps(item))

        try:
            result = await self.runtime.modern.request(self.service, msg, related)
            answer = protocol.result(msg["id"], finish_result(result))
            status = 200
        except McpError as exc:
            answer = protocol.error(msg["id"], exc)
            status = protocol.ERROR_HTTP_STATUS.get(exc.code, 200)
        if self.ctx.status:  # the stream was started
            self._event(protocol.dumps(answer))
            self.conn.end_response()
        else:
            self._json(status, answer)

    # ------------------------------------------------------------------ HTTP+SSE (2024-11-05)

    async def _sse_transport_open(self) -> None:
        try:
            session = self.runtime.new_session(self.service, self.ctx.identity, self.ctx.client_ip)
        except SessionQuotaError as exc:
            self._jsonrpc_error(None, exc, exc.status)
            return
        self.ctx.mcp_session = session.sid
        listener = session.stream.attach(None)
        endpoint = self.ctx.path + b"?sessionId=" + self.runtime.sse_query_id(session).encode()
        self._head(200, _SSE_HEADERS, None, True)
        self.conn.send_body(encode_sse_event(endpoint, "endpoint"))
        self.conn.flush()
        try:
            await self._pump(listener)
        finally:
            # The session lives as long as its stream.
            await self.runtime.end(session)
        self.conn.end_response()

    async def _sse_transport_post(self, session: DownstreamSession) -> None:
        self.ctx.mcp_session = session.sid
        msg = self._decode()
        mismatch = _routing_header_mismatch(self.ctx.headers, msg)
        if mismatch is not None:
            self._jsonrpc_error(msg.get("id"), McpError(protocol.HEADER_MISMATCH, mismatch), 400)
            return
        self._status(202)  # the answer goes on the event stream
        federation = self.runtime.federation
        if protocol.is_notification(msg):
            await federation.client_notification(session, msg)
            return
        if protocol.is_response(msg):
            await federation.client_response(session, msg)
            return

        try:
            if msg["method"] == "initialize":
                params = msg.get("params")
                if not isinstance(params, dict):
                    raise McpError(protocol.INVALID_PARAMS, "initialize needs params")
                answer = protocol.result(msg["id"], await federation.initialize(session, params))
            else:
                answer = protocol.result(msg["id"], await federation.request(session, msg, session.to_stream))
        except McpError as exc:
            answer = protocol.error(msg["id"], exc)
        self._note(msg, session)
        session.stream.push(answer)

    # ------------------------------------------------------------------ responses

    def _accepts_sse(self) -> bool:
        return b"text/event-stream" in self._first.get(b"accept", b"")

    def _event(self, data: bytes, event_id: str | None = None) -> None:
        self.conn.send_body(encode_sse_event(data, "message", event_id))
        self.conn.flush()

    def _head(self, status: int, headers: list[tuple[bytes, bytes]], length: int | None, keep_alive: bool) -> None:
        """The response head, through the route's response-phase policies (header edits, rate-limit
        state); body replacements do not apply to MCP answers."""
        chain = self.route.chain
        if chain.response or self.ctx.response_headers:
            headers = list(headers)
            apply_response(chain, self.ctx, status, headers)
        self.conn.send_head(status, headers, length, keep_alive)

    def _json(self, status: int, msg: Message, headers: tuple[tuple[bytes, bytes], ...] = ()) -> None:
        body = protocol.dumps(msg)
        self._head(status, [_JSON, *headers], len(body), True)
        self.conn.send_body(body)
        self.conn.end_response()

    def _jsonrpc_error(self, id_: Any, err: McpError, status: int) -> None:
        if self.ctx.status:  # the response already started (a stream): nothing sane to add
            self.conn.abort()
            return
        self.ctx.reason = err.message
        self._json(status, protocol.error(id_, err))

    def _status(self, status: int, *headers: tuple[bytes, bytes]) -> None:
        self._head(status, list(headers), 0, False)
        self.conn.end_response()

    def _unknown_session(self) -> None:
        self.ctx.reason = "unknown MCP session"
        self._json(404, protocol.error(None, McpError(protocol.INVALID_REQUEST, "Session not found")))

    def _note(self, msg: Message, session: DownstreamSession | None) -> None:
        """MCP facts for the access log and metrics."""
        ctx = self.ctx
        method = msg.get("method")
        # (Client input, in the access log and metrics labels: cut to a bounded length.)
        if isinstance(method, str):
            ctx.mcp_method = method if len(method) <= protocol.SHOWN_MAX else protocol.shown(method)
        params = msg.get("params")
        if session is not None and isinstance(params, dict) and method in protocol.NAME_PARAM:
            name = params.get(protocol.NAME_PARAM[method])
            if isinstance(name, str):
                ctx.mcp_resource = name if len(name) <= protocol.SHOWN_MAX else protocol.shown(name)
                caller = CURRENT_CALLER.get()
                if caller is not None and caller.target is not None:
                    ctx.mcp_target = caller.target  # (the routed call resolved it)
                else:
                    with contextlib.suppress(McpError):
                        ctx.mcp_target = self.runtime.federation.resolve(session, method, params)[0]
