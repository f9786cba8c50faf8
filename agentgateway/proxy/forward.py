"""Proxying one request to an HTTP upstream and its response back, streaming both ways.

``HttpForward`` is the exchange for routes with HTTP backends. Bytes flow through callbacks,
never through a queue: request body chunks are written to the upstream as they arrive and
response chunks to the client as they arrive. Back-pressure is passed across: a slow client
pauses reading from the upstream, a slow upstream pauses reading from the client.

The upstream is spoken to in HTTP/1.1, or in HTTP/2 (multiplexed on pooled connections) when
its backend says so (``http.version: "2"``) or, with no version set, for gRPC requests, which
need HTTP/2: a backend that serves gRPC speaks it. The client's protocol does not decide it.
An HTTP/2 upstream's trailers (gRPC's status) are relayed.

The route's upstream policies act here: timeouts (a timer per request and per attempt, armed only
when configured), retries (a bounded copy of the body is replayed to the next attempt, on another
healthy backend when there is one), passive health (each attempt's outcome is recorded against
its backend) and the request mirror (fed the same bytes as the primary upstream).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import random
import time
from typing import TYPE_CHECKING, cast

from agentgateway.core.exchange import PAUSE_BODY_BUFFER, PAUSE_UPSTREAM
from agentgateway.observe.counters import COUNTERS
from agentgateway.observe.tracing import end_call, start_upstream
from agentgateway.policy.chain import apply_response
from agentgateway.policy.retry import IDEMPOTENT
from agentgateway.proxy.mirror import MirrorCall
from agentgateway.upstream.backend_auth import BackendAuth, BackendAuthError, HeaderEdits, Outbound
from agentgateway.upstream.pool import UpstreamConnectError
from agentgateway.upstream.target import HTTP_2, HTTP_AUTO, HttpTarget

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import ResponseProcessor, ResponseWriter
    from agentgateway.core.trace import Span
    from agentgateway.proxy.host import ProxyHost
    from agentgateway.routing.route import CompiledRoute
    from agentgateway.upstream.balance import WeightedChoice
    from agentgateway.upstream.http1 import Headers, UpstreamConnection
    from agentgateway.upstream.http2 import Http2UpstreamStream

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
# Request headers the gateway writes itself. The forwarded ones reach this point only from a
# trusted proxy (the edge drops them otherwise, server/forwarded.py): its values are extended
# (X-Forwarded-For) or kept (-Proto, -Host).
_REQUEST_REWRITTEN = _HOP_BY_HOP | {b"host", b"expect", b"x-forwarded-for", b"x-forwarded-proto", b"x-forwarded-host"}
_RESPONSE_REWRITTEN = _HOP_BY_HOP | {b"content-length"}

# Connection header values that name no other header (the common case, checked cheaply).
_PLAIN_CONNECTION = frozenset((b"keep-alive", b"close", b"Keep-Alive", b"Close", b"upgrade", b"Upgrade"))

# The prefix of the cookies the gateway sets itself (policy/oidc.py COOKIE_PREFIX).
_GATEWAY_COOKIE_PREFIX = b"agw_oidc_"

_LAST_CHUNK = b"0\r\n\r\n"
# Body bytes kept to replay a request when a pooled connection turns out to be dead, and body
# bytes buffered while the upstream connection is being made.
_REPLAY_LIMIT = 64 * 1024
_PENDING_LIMIT = 256 * 1024
# An attempt that times out after waiting this share of its ``backendRequestTimeout`` or more
# for the client's request body is not counted against the backend's health.
_CLIENT_SHARE = 0.1

_BODY_RELAY, _BODY_DROP, _BODY_PROCESS = 0, 1, 2


def _connection_tokens(headers: Headers) -> frozenset[bytes]:
    """Header names an upstream lists in its response's ``Connection`` (hop-by-hop too). A
    client's are removed when its request head is parsed (server/head.py), before any policy."""
    tokens: set[bytes] = set()
    for name, value in headers:
        if name == b"connection":
            tokens.update(t.strip().lower() for t in value.split(b","))
    tokens.discard(b"close")
    tokens.discard(b"keep-alive")
    return frozenset(tokens)


# RFC 6455 §1.3: the value a WebSocket server appends to the client's key for its accept value.
_WEBSOCKET_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def _tokens(values: list[bytes]) -> list[bytes]:
    return [token.strip().lower() for value in values for token in value.split(b",") if token.strip()]


def switch_problem(asked: bytes, request: Headers, response: Headers) -> str | None:
    """Why an upstream's ``101`` does not answer the upgrade the client asked for (None when it
    does). A backend that has not switched (a status it reflects from elsewhere, a handler that
    copies another server's headers) still reads HTTP, and a tunnel to it would take the client's
    next bytes as requests no route or policy saw. So the 101 must name only protocols the client
    named (RFC 9110 §7.8), and a switch to WebSocket must carry the accept value of the client's
    one key (RFC 6455 §4.1, which tells clients to fail the connection otherwise)."""
    switched = _tokens([value for name, value in response if name == b"upgrade"])
    if not switched:
        return "101 Switching Protocols names no protocol"
    wanted = set(_tokens([asked]))
    for token in switched:
        if token not in wanted:
            return f"101 Switching Protocols to {token.decode('latin-1')!r}, a protocol not asked by the client"
    if b"websocket" in switched:
        keys = [value for name, value in request if name == b"sec-websocket-key"]
        accepts = [value for name, value in response if name == b"sec-websocket-accept"]
        expected = (
            base64.b64encode(hashlib.sha1(keys[0].strip() + _WEBSOCKET_GUID).digest()) if len(keys) == 1 else None
        )
        if expected is None or len(accepts) != 1 or accepts[0].strip() != expected:
            return "101 Switching Protocols to websocket without the Sec-WebSocket-Accept of the client's key"
    return None


def _gateway_cookie(set_cookie: bytes) -> bool:
    """A ``Set-Cookie`` of one of the gateway's own cookies (``agw_oidc_…``, the browser login's
    session and transactions). A backend must not set them: every backend behind the host shares
    the browser's cookies, so one could plant its own login session in a victim's browser for
    another route's login (session fixation) or log the victim out. Browsers trim the name's
    blanks; the prefix is compared without case, so no spelling of it passes."""
    return set_cookie.lstrip(b" \t")[: len(_GATEWAY_COOKIE_PREFIX)].lower() == _GATEWAY_COOKIE_PREFIX


def build_request_head(
    request: RequestCtx,
    chunked: bool,
    body_length: int | None = None,
    target: bytes | None = None,
    edits: HeaderEdits = (),  # type: ignore[assignment]
) -> bytes:
    """Request line and headers for the upstream, in one buffer. The headers a client named in
    its ``Connection`` header were removed when the head was parsed (server/head.py), so the
    policies saw what goes upstream, and a header a policy sets under such a name is sent.
    ``body_length`` replaces the client's body framing (a transformed body); ``target`` and
    ``edits`` are a backendAuth's (another request target, headers replaced or removed)."""
    headers = request.headers
    skip = frozenset(name for name, _ in edits) if edits else None
    parts = [request.method, b" ", target or request.target, b" HTTP/1.1\r\nhost: ", request.host, b"\r\n"]
    chain: list[bytes] | None = None
    proto = request.scheme
    forwarded_host = request.client_host
    for name, value in headers:
        if name in _REQUEST_REWRITTEN:
            if name == b"x-forwarded-for":
                if chain is None:
                    chain = [value]
                else:
                    chain.append(value)
            elif name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-host":
                forwarded_host = value
            continue
        if skip and name in skip:
            continue
        if body_length is not None and name == b"content-length":
            continue
        parts += (name, b": ", value, b"\r\n")
    for name, edited in edits:
        if edited is not None:
            parts += (name, b": ", edited, b"\r\n")
    peer = request.peer_ip.encode()
    forwarded_for = peer if chain is None else b", ".join((*chain, peer))
    parts += (b"x-forwarded-for: ", forwarded_for, b"\r\nx-forwarded-proto: ", proto, b"\r\n")
    if forwarded_host:
        parts += (b"x-forwarded-host: ", forwarded_host, b"\r\n")
    if body_length is not None:
        parts.append(b"content-length: %d\r\n" % body_length)
    elif chunked:
        parts.append(b"transfer-encoding: chunked\r\n")
    if request.upgrade is not None:
        # Upgrade and Connection are hop-by-hop: an upgrade asks this hop, so the gateway asks
        # the next one itself, for the protocols the client named (Sec-WebSocket-* pass as is).
        parts += (b"connection: upgrade\r\nupgrade: ", request.upgrade, b"\r\n")
    parts.append(b"\r\n")
    return b"".join(parts)


def h2_request_fields(
    request: RequestCtx,
    scheme: bytes,
    body_length: int | None = None,
    target: bytes | None = None,
    edits: HeaderEdits = (),  # type: ignore[assignment]
) -> Headers:
    """``build_request_head`` for an HTTP/2 upstream: the same fields, as a list, with the
    pseudo-headers first. ``te: trailers`` is kept (gRPC servers ask for it)."""
    headers = request.headers
    skip = frozenset(name for name, _ in edits) if edits else None
    fields = [
        (b":method", request.method),
        (b":scheme", scheme),
        (b":authority", request.host),
        (b":path", target or request.target),
    ]
    chain: list[bytes] | None = None
    proto = request.scheme
    forwarded_host = request.client_host
    for name, value in headers:
        if name in _REQUEST_REWRITTEN:
            if name == b"x-forwarded-for":
                if chain is None:
                    chain = [value]
                else:
                    chain.append(value)
            elif name == b"x-forwarded-proto":
                proto = value
            elif name == b"x-forwarded-host":
                forwarded_host = value
            elif name == b"te" and value.strip().lower() == b"trailers":
                fields.append((name, b"trailers"))
            continue
        if skip and name in skip:
            continue
        if body_length is not None and name == b"content-length":
            continue
        fields.append((name, value))
    for name, edited in edits:
        if edited is not None:
            fields.append((name, edited))
    peer = request.peer_ip.encode()
    fields.append((b"x-forwarded-for", peer if chain is None else b", ".join((*chain, peer))))
    fields.append((b"x-forwarded-proto", proto))
    if forwarded_host:
        fields.append((b"x-forwarded-host", forwarded_host))
    if body_length is not None:
        fields.append((b"content-length", b"%d" % body_length))
    return fields


def is_grpc(headers: Headers) -> bool:
    """A gRPC request (``application/grpc``, ``application/grpc+proto``; not gRPC-Web)."""
    for name, value in headers:
        if name == b"content-type":
            return value.startswith(b"application/grpc") and value[16:17] in (b"", b"+", b";")
    return False


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
        if name == b"set-cookie" and _gateway_cookie(value):
            continue
        parts += (name, b": ", value, b"\r\n")
    if listed:
        parts = []
        for name, value in headers:
            if (
                name not in _RESPONSE_REWRITTEN
                and name not in listed
                and not (name == b"set-cookie" and _gateway_cookie(value))
            ):
                parts += (name, b": ", value, b"\r\n")
    return b"".join(parts), (None if chunked else content_length)


class _AttemptClock:
    """Where an attempt's time went, for ``backendRequestTimeout``: when it started, when the
    client's body was complete, and how long the upstream held the body back (its window or
    socket buffer full: not the client's doing)."""

    __slots__ = ("started", "body_done", "held", "held_since")

    def __init__(self, started: float, previous: _AttemptClock | None) -> None:
        self.started = started
        self.body_done: float = 0.0 if previous is None else previous.body_done  # 0: not timed
        self.held = 0.0
        self.held_since = 0.0

    def client_time(self, now: float, request_done: bool) -> float:
        """The attempt's time spent waiting for the client's body."""
        end = (self.body_done or self.started) if request_done else now
        held = self.held + (now - self.held_since if self.held_since else 0.0)
        return max(0.0, min(end, now) - self.started - held)


class HttpForward:
    __slots__ = (
        "worker",
        "conn",
        "ctx",
        "route",
        "target",
        "upstream",
        "_head",
        "_sent_head",
        "_chunked",
        "_no_body",
        "_body",
        "_pending",
        "_pending_bytes",
        "_out",
        "_replay",
        "_replay_bytes",
        "_request_done",
        "_response_started",
        "_finished",
        "_stale_retried",
        "_tries",
        "_avoid",
        "_connect_task",
        "_deadline_timer",
        "_attempt_timer",
        "_retry_timer",
        "_fetch_timer",
        "_mirror",
        "_body_mode",
        "_processor",
        "_span",
        "_status",
        "_h2",
        "_sent_fields",
        "_end_due",
        "_awaiting_head",
        "_stalled",
        "_clock",
        "_policy_host",
    )

    def __init__(self, worker: ProxyHost, conn: ResponseWriter, ctx: RequestCtx, route: CompiledRoute) -> None:
        self.worker = worker
        self.conn = conn
        self.ctx = ctx
        self.route = route
        self.target: HttpTarget | None = None
        self.upstream: UpstreamConnection | Http2UpstreamStream | None = None
        # A body set by a transformation replaces the client's, which is then read and dropped.
        body = ctx.request_body
        self._body = body
        self._no_body = ctx.method == b"HEAD"
        self._head = b""
        # The Host the policies left (a retry to a backend given by address sends it again).
        self._policy_host: bytes | None = None
        # What this attempt sends: the head, with the backend's credentials when it has some.
        self._sent_head = b""
        # Bytes for the upstream produced while handling one client read, written at its end.
        self._out: list[bytes] = []
        # What a new attempt sends again (``_replay``): the body so far, while it fits the replay
        # bound. ``_pending``: body bytes that wait for the upstream connection.
        self._replay: list[bytes] | None
        if body is None:
            self._chunked = ctx.chunked
            self._pending: list[bytes] = []
            self._pending_bytes = 0
            self._replay = [] if ctx.chunked or ctx.content_length else None
        else:
            self._chunked = False
            self._pending = [body] if body else []
            self._pending_bytes = len(body)
            self._replay = [body] if body else ([] if ctx.has_body else None)
        self._replay_bytes = 0
        self._request_done = False
        self._response_started = False
        self._finished = False
        self._stale_retried = False
        self._tries = 0
        self._avoid: HttpTarget | None = None
        self._connect_task: asyncio.Task[None] | None = None
        self._deadline_timer: asyncio.TimerHandle | None = None
        self._attempt_timer: asyncio.TimerHandle | None = None
        self._retry_timer: asyncio.TimerHandle | None = None
        self._fetch_timer: asyncio.TimerHandle | None = None
        self._mirror: MirrorCall | None = None
        # How response body chunks are handled: relayed, dropped (a policy replaced the body) or
        # given to a response processor.
        self._body_mode = _BODY_RELAY
        self._processor: ResponseProcessor | None = None
        # The upstream call's span when the request is traced (observe/tracing.py).
        self._span: Span | None = None
        self._status = 0
        # This attempt speaks HTTP/2 to its upstream: the head as fields, the body unframed, and
        # the end of the request sent at the end of the client read that completed it.
        self._h2 = False
        self._sent_fields: Headers = []
        self._end_due = False
        # The connection's sweep watches for this exchange's response head (``_await_head``).
        self._awaiting_head = False
        # The upstream stopped taking the request body (its window or socket buffer is full):
        # the same deadline as the response head runs, or it could hold the request forever.
        self._stalled = False
        # With ``backendRequestTimeout``: the time of the attempt spent waiting for the client.
        self._clock: _AttemptClock | None = None

    def start(self) -> None:
        route = self.route
        timeout = route.timeout
        if timeout is not None and timeout.request is not None:
            left = timeout.request - (time.perf_counter() - self.ctx.start)
            self._deadline_timer = self.worker.loop.call_later(max(left, 0.0), self._request_timed_out)
        fetch = self.ctx.fetch_timeout
        if fetch is not None:
            self._fetch_timer = self.worker.loop.call_later(fetch, self._fetch_timed_out)
        self._attempt(flush=False)  # the head is flushed at the end of the client read
        if self.ctx.expect_continue and not self._finished:
            self.conn.send_continue()

    # ------------------------------------------------------------------ attempts

    def _pick(self) -> HttpTarget | None:
        # Routes with HTTP backends have only HTTP backends (checked at load).
        backends: WeightedChoice[HttpTarget] = self.route.backends  # type: ignore[assignment]
        avoid = self._avoid
        if not self.route.health_checked and avoid is None:
            return backends.pick()
        now = self.worker.loop.time()
        picked = backends.pick()
        if picked is not None and picked is not avoid and (picked.health is None or picked.health.available(now)):
            return picked

        def usable(t: HttpTarget) -> bool:
            return t.health is None or t.health.available(now)

        # Another healthy backend, else any healthy one, else (all evicted) the weighted pick.
        return backends.pick_where(lambda t: t is not avoid and usable(t)) or backends.pick_where(usable) or picked

    def _attempt(self, flush: bool) -> None:
        route = self.route
        # (routes with HTTP backends have only HTTP backends, checked at load)
        backends: WeightedChoice[HttpTarget] = route.backends  # type: ignore[assignment]
        target = self._pick() if route.health_checked or self._avoid is not None else backends.pick()
        ctx = self.ctx
        if target is None:
            self._fail(500, f"route {ctx.route} has no backends")
            return
        self.target = target
        ctx.backend = target.label
        self._tries += 1
        if self._tries == 1 and ctx.trace is not None and ctx.trace.sampled and not ctx.relayed:
            self._span = start_upstream(ctx, target.host, target.port, target.label)
        version = target.http_version
        if version == HTTP_2 or (version == HTTP_AUTO and ctx.version == "2" and is_grpc(ctx.headers)):
            if ctx.upgrade is not None:
                # An HTTP/1.1 upgrade has no HTTP/2 form towards the upstream (extended CONNECT,
                # RFC 8441, is not spoken upstream).
                self._fail(502, f"backend {target.label} speaks HTTP/2: an upgrade cannot be forwarded to it")
                return
            self._attempt_h2(target, flush)
            return
        if self._h2:
            self._switch_protocol(False)  # a retry went from an HTTP/2 backend to an HTTP/1.1 one
        if self._set_host(target) or not self._head:
            body = self._body
            self._head = build_request_head(ctx, self._chunked, body_length=None if body is None else len(body))
        if self._tries == 1 and route.mirror is not None and ctx.upgrade is None:
            # (an upgrade is not mirrored: the mirror cannot take part in the new protocol)
            self._start_mirror()  # the mirror gets the head without any backend's credentials
        if route.timeout is not None:
            self._arm_attempt_timer()
        auth = target.auth
        if auth is None:
            self._sent_head = self._head
        elif not auth.ready(ctx):
            self._connect_task = self.worker.loop.create_task(self._authorize_and_attach(target, auth))
            return
        elif not self._sign(target, auth):
            return
        upstream = self.worker.pool.take(target)
        if upstream is not None:
            self._attach(upstream, flush)
        else:
            self._connect_task = self.worker.loop.create_task(self._connect_and_attach(target))

    def _set_host(self, target: HttpTarget) -> bool:
        """Give the request the Host ``target`` gets (True when it changed): the backend's own
        authority with ``urlRewrite.authority: auto``, and for a backend named by DNS unless a
        policy chose the Host (agentgateway's default ``hostRewrite: auto``); else the Host the
        policies left, the client's by default. So a client does not pick the virtual host of a
        named upstream by the Host it sends."""
        ctx = self.ctx
        if self._policy_host is None:
            self._policy_host = ctx.host
        host = target.authority if ctx.auto_host or (target.named and not ctx.keep_host) else self._policy_host
        if host == ctx.host:
            return False
        ctx.host = host
        return True

    def _attempt_h2(self, target: HttpTarget, flush: bool) -> None:
        """``_attempt`` to an HTTP/2 upstream (the request mirror, an HTTP/1.1 copy, is not made)."""
        ctx = self.ctx
        if not self._h2:
            self._switch_protocol(True)
        self._set_host(target)
        body = self._body
        self._sent_fields = h2_request_fields(
            ctx, b"https" if target.tls is not None else b"http", None if body is None else len(body)
        )
        self._arm_attempt_timer()
        auth = target.auth
        if auth is not None:
            if not auth.ready(ctx):
                self._connect_task = self.worker.loop.create_task(self._authorize_and_attach(target, auth))
                return
            if not self._sign(target, auth):
                return
        upstream = self.worker.h2_pool.take(target)
        if upstream is not None:
            self._attach(upstream, flush)
        else:
            self._connect_task = self.worker.loop.create_task(self._connect_and_attach(target))

    def _switch_protocol(self, h2: bool) -> None:
        """The attempts go from one HTTP version to the other: the body is framed anew."""
        self._h2 = h2
        self._chunked = self.ctx.chunked and self._body is None and not h2
        self._end_due = False
        if self._tries > 1:
            self._reset_body()

    def _arm_attempt_timer(self) -> None:
        timeout = self.route.timeout
        if timeout is not None and timeout.backend is not None:
            loop = self.worker.loop
            self._attempt_timer = loop.call_later(timeout.backend, self._attempt_timed_out)
            self._clock = _AttemptClock(loop.time(), self._clock)

    def _sign(self, target: HttpTarget, auth: BackendAuth) -> bool:
        """The head with the backend's credentials; False (and answered) when they failed."""
        ctx = self.ctx
        body = self._body
        if auth.needs_body and body is None and ctx.has_body:
            self._fail(500, "backend authentication failed: the request body was not buffered for signing")
            return False
        scheme = b"https" if target.tls else b"http"
        out = Outbound(ctx.method, scheme, ctx.host, ctx.target, ctx.headers, body or b"", ctx.jwt_token, ctx)
        try:
            path, edits = auth.apply(out)
        except BackendAuthError as exc:
            self._fail(exc.status, f"backend authentication failed: {exc}")
            return False
        length = None if body is None else len(body)
        if self._h2:
            if edits or path != ctx.target:
                self._sent_fields = h2_request_fields(ctx, scheme, length, target=path, edits=edits)
            return True
        if not edits and path == ctx.target:
            self._sent_head = self._head  # nothing to add (passthrough)
            return True
        self._sent_head = build_request_head(ctx, self._chunked, body_length=length, target=path, edits=edits)
        return True

    async def _authorize_and_attach(self, target: HttpTarget, auth: BackendAuth) -> None:
        """Fetch the backend's credentials (a token endpoint, the AWS chain), then connect."""
        try:
            await auth.prepare(self.ctx)
        except BackendAuthError as exc:
            self._connect_task = None
            if not self._finished:
                self._fail(exc.status, f"backend authentication failed: {exc}")
            return
        self._connect_task = None
        if self._finished or not self._sign(target, auth):
            return
        upstream = self.worker.h2_pool.take(target) if self._h2 else self.worker.pool.take(target)
        if upstream is None:
            self._connect_task = self.worker.loop.create_task(self._connect_and_attach(target))
        else:
            self._attach(upstream, flush=True)

    def _start_mirror(self) -> None:
        mirror = self.route.mirror
        assert mirror is not None
        if (mirror.percentage < 1.0 and random.random() >= mirror.percentage) or not MirrorCall.admit():
            return
        call = MirrorCall(self.worker, mirror.target, self._head)
        if self._body:
            call.send(self._body)
        call.start()
        self._mirror = call

    async def _connect_and_attach(self, target: HttpTarget) -> None:
        upstream: UpstreamConnection | Http2UpstreamStream
        try:
            if self._h2:
                upstream = await self.worker.h2_pool.open(target)
            else:
                upstream = await self.worker.pool.connect(target)
        except UpstreamConnectError as exc:
            self._connect_task = None
            if not self._finished:
                self._attempt_failed(503, exc.message, received=False)
            return
        self._connect_task = None
        if self._finished:
            if self._h2:
                upstream.close()
            else:
                self.worker.pool.release(cast("UpstreamConnection", upstream))
            return
        self._attach(upstream, flush=True)

    def _attach(self, upstream: UpstreamConnection | Http2UpstreamStream, flush: bool) -> None:
        self.upstream = upstream
        if self._h2:
            upstream.begin(self, self._no_body)
            self._attach_h2(cast("Http2UpstreamStream", upstream), flush)
            return
        if self.ctx.upgrade is None:
            upstream.begin(self, self._no_body)
        else:
            cast("UpstreamConnection", upstream).begin_upgrade(self)
        self._out.append(self._sent_head)
        if self._pending:
            self._out += self._pending
            self._pending = []
            self._pending_bytes = 0
            self.conn.resume_request_body(PAUSE_BODY_BUFFER)
        if flush:
            self.client_data_done()
        if self.conn.write_paused:
            upstream.pause_reading()
        if self._request_done:
            self._await_head()

    def _attach_h2(self, stream: Http2UpstreamStream, flush: bool) -> None:
        no_body = self._body is None and not self.ctx.has_body
        stream.send_head(self._sent_fields, end_stream=no_body)
        if self.upstream is not stream:
            return  # the connection was gone: the attempt has failed (and maybe been retried)
        if self._pending:
            self._out += self._pending
            self._pending = []
            self._pending_bytes = 0
            self.conn.resume_request_body(PAUSE_BODY_BUFFER)
        if self._request_done and not no_body:
            self._end_due = True
        if flush:
            self.client_data_done()
        if self.conn.write_paused:
            stream.pause_reading()
        if self._request_done:
            self._await_head()

    def _can_retry(self, received: bool) -> bool:
        retry = self.route.retry
        if retry is None or self._tries >= retry.attempts or self._response_started or self._finished:
            return False
        if received and self.ctx.method not in IDEMPOTENT:
            return False  # the backend had started answering: it may have acted on the request
        return self._replay is not None or not self.ctx.has_body

    def _attempt_failed(self, status: int, message: str, received: bool, blame: bool = True) -> None:
        """The current attempt ended without a usable response (``blame``: the backend's failure,
        recorded against its health)."""
        self._cancel_attempt_timer()
        target = self.target
        if blame and target is not None and target.health is not None:
            target.health.record(False, self.worker.loop.time())
        if self._can_retry(received):
            self._retry()
        else:
            self._fail(status, message)

    def _retry(self) -> None:
        retry = self.route.retry
        assert retry is not None and self.target is not None
        ctx = self.ctx
        COUNTERS.inc("agentgateway_retries", (ctx.gateway, ctx.listener, ctx.route, self.target.label))
        self._avoid = self.target
        self._reset_body()
        if retry.backoff:
            self._retry_timer = self.worker.loop.call_later(retry.backoff, self._retry_now)
        else:
            self._retry_now()

    def _retry_now(self) -> None:
        self._retry_timer = None
        if not self._finished:
            self._attempt(flush=True)

    def _reset_body(self) -> None:
        """The next attempt starts from the replay copy of the body."""
        self._out = []
        self._end_due = False
        chunked = self._chunked
        pending = [b"%x\r\n%b\r\n" % (len(c), c) if chunked else c for c in self._replay or ()]
        if self._request_done and chunked:
            pending.append(_LAST_CHUNK)
        self._pending = pending
        self._pending_bytes = sum(len(p) for p in pending)

    # ------------------------------------------------------------------ timers

    def _request_timed_out(self) -> None:
        self._deadline_timer = None
        if self._finished or self._response_started:
            return
        self._drop_upstream()
        timeout = self.route.timeout
        assert timeout is not None and timeout.request is not None
        self._fail(504, f"request timeout: no response within {timeout.request:g}s")

    def _fetch_timed_out(self) -> None:
        """A policy's bound on the whole exchange (``ctx.fetch_timeout``: the a2a card fetch)
        passed, head and body included: 504 while the client has seen nothing, else the
        response is cut."""
        self._fetch_timer = None
        if self._finished:
            return
        self._drop_upstream()
        timeout = self.ctx.fetch_timeout
        if self._response_started and self._body_mode == _BODY_RELAY:
            self._finished = True
            self._cancel_timers()
            self.ctx.error = f"upstream response not complete within {timeout:g}s"
            self.conn.abort()
            return
        self._close_processor()
        self._fail(504, f"upstream timeout: no complete response within {timeout:g}s")

    def _attempt_timed_out(self) -> None:
        self._attempt_timer = None
        if self._finished or self._response_started:
            return
        upstream = self.upstream
        received = upstream is not None and upstream.received
        self._drop_upstream()
        timeout = self.route.timeout
        assert timeout is not None and timeout.backend is not None and self.target is not None
        message = f"upstream request timeout: {self.target.label} did not answer within {timeout.backend:g}s"
        # The client's slow body is not the backend's failure: an attempt that spent more than a
        # tenth of its time waiting for the client is not charged to the backend's health (a
        # client could otherwise get healthy backends evicted by uploading slowly).
        clock = self._clock
        waited = 0.0 if clock is None else clock.client_time(self.worker.loop.time(), self._request_done)
        blame = waited <= timeout.backend * _CLIENT_SHARE
        if not blame:
            message += f" (the client's request body took {waited:.3g}s of it)"
        self._attempt_failed(504, message, received, blame)

    def _drop_upstream(self) -> None:
        """Abandon the current attempt: its connection cannot be reused (a response is due)."""
        if self._connect_task is not None:
            self._connect_task.cancel()
            self._connect_task = None
        upstream = self.upstream
        self.upstream = None
        if upstream is not None:
            upstream.abort()

    def _cancel_attempt_timer(self) -> None:
        if self._awaiting_head:
            self._awaiting_head = False
            self.conn.response_arrived()
        if self._attempt_timer is not None:
            self._attempt_timer.cancel()
            self._attempt_timer = None

    def _await_head(self) -> None:
        """The request is all with the upstream: without a timeout policy, it has the route's
        ``head_timeout`` to start answering (checked by the connection sweep, not a timer)."""
        limit = self.route.head_timeout
        if limit is not None and not self._response_started and not self._finished:
            self._awaiting_head = True
            self.conn.expect_response(limit)

    def response_timed_out(self) -> None:
        """Called by the connection sweep: the upstream sent no response head in time."""
        if self._finished or self._response_started or self.upstream is None:
            return
        upstream = self.upstream
        received = upstream.received
        self._drop_upstream()
        assert self.target is not None
        label, limit = self.target.label, self.route.head_timeout
        if self._stalled:
            message = f"upstream timeout: {label} took no request body for {limit:g}s"
        else:
            message = f"upstream response timeout: {label} sent no response within {limit:g}s"
        self._stalled = False
        self._attempt_failed(504, message, received)

    def _cancel_timers(self) -> None:
        if self._awaiting_head:
            self._awaiting_head = False
            self.conn.response_arrived()
        if (
            self._deadline_timer is None
            and self._attempt_timer is None
            and self._retry_timer is None
            and self._fetch_timer is None
        ):
            return  # the common case: no timeout policy armed any
        for timer in (self._deadline_timer, self._attempt_timer, self._retry_timer, self._fetch_timer):
            if timer is not None:
                timer.cancel()
        self._deadline_timer = self._attempt_timer = self._retry_timer = self._fetch_timer = None

    # ------------------------------------------------------------------ request body (Exchange)

    def request_body(self, chunk: bytes) -> None:
        self.ctx.request_bytes += len(chunk)
        if self._body is not None:
            return  # replaced by a transformation
        replay = self._replay
        if replay is not None:
            self._replay_bytes += len(chunk)
            if self._replay_bytes <= _REPLAY_LIMIT:
                replay.append(chunk)
            else:
                self._replay = None
        data = b"%x\r\n%b\r\n" % (len(chunk), chunk) if self._chunked else chunk
        if self._mirror is not None:
            self._mirror.send(data)
        self._send(data)

    def request_end(self) -> None:
        self._request_done = True
        if self._clock is not None:
            self._clock.body_done = self.worker.loop.time()
        if self.upstream is not None:
            self._await_head()
        if self._chunked:
            if self._mirror is not None:
                self._mirror.send(_LAST_CHUNK)
            self._send(_LAST_CHUNK)
        elif self._h2:
            self._end_due = True
        if self._mirror is not None:
            self._mirror.request_end()
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
        if self._end_due and self.upstream is not None:
            self._end_due = False
            cast("Http2UpstreamStream", self.upstream).end_request()

    def client_lost(self) -> None:
        if self._span is not None and not self._finished:
            end_call(self._span, self._status, "the client went away")
        self._finished = True
        self._cancel_timers()
        self._close_processor()
        self._drop_upstream()
        mirror = self._mirror
        if mirror is not None and not self._request_done:
            mirror.abort()  # its copy of the request would never be complete

    # ------------------------------------------------------------------ response (UpstreamSink)

    def upstream_head(self, status: int, headers: Headers) -> None:
        self._cancel_attempt_timer()
        route = self.route
        target = self.target
        if target is not None and target.health is not None:
            target.health.record(status < 500, self.worker.loop.time())
        retry = route.retry
        if retry is not None and status in retry.codes and self._can_retry(False):
            # A status the route retries: this answer is dropped with its connection.
            upstream = self.upstream
            self.upstream = None
            if upstream is not None:
                upstream.abort()
            self._retry()
            return
        self._response_started = True
        self._status = status
        if self._deadline_timer is not None:
            self._deadline_timer.cancel()
            self._deadline_timer = None
        ctx = self.ctx
        chain = route.chain
        if chain.response or ctx.response_headers:
            apply_response(chain, ctx, status, headers)
            replaced = ctx.response_body
            if replaced is not None:
                self._body_mode = _BODY_DROP
                fields, _ = response_fields(headers)
                self.conn.send_head_fields(status, fields, len(replaced), True)
                self.conn.send_body(replaced)
                return
        for policy in chain.processors:
            processor = policy.process_response(ctx, self.conn, status, headers)
            if processor is not None:
                self._processor = processor
                self._body_mode = _BODY_PROCESS
                return
        fields, content_length = response_fields(headers)
        self.conn.send_head_fields(status, fields, content_length, True)

    def upstream_switched(self, headers: Headers, transport: asyncio.Transport, early: bytes) -> None:
        """The upstream accepted the upgrade (101): its head goes to the client, after the
        route's response policies (header modifiers apply to it), and both connections become
        a byte tunnel. The upstream connection is the tunnel's now, never the pool's."""
        self.upstream = None
        self._cancel_attempt_timer()
        if self._finished:
            transport.abort()
            return
        ctx = self.ctx
        problem = switch_problem(ctx.upgrade or b"", ctx.headers, headers)
        if problem is not None:
            transport.abort()
            self._fail(502, f"invalid response from upstream {ctx.backend}: {problem}")
            return
        target = self.target
        if target is not None and target.health is not None:
            target.health.record(True, self.worker.loop.time())
        self._finished = True
        self._response_started = True
        self._cancel_timers()
        if self._span is not None:
            # The call was the handshake; the relay after it is the server span's (until it ends).
            end_call(self._span, 101)
        chain = self.route.chain
        if chain.response or ctx.response_headers:
            apply_response(chain, ctx, 101, headers)
        fields, _ = response_fields(headers)
        protocol = b""
        for name, value in headers:
            if name == b"upgrade":
                protocol = value
        self.conn.switch_protocols(fields + b"connection: upgrade\r\nupgrade: " + protocol + b"\r\n", transport, early)

    def upstream_body(self, chunk: bytes) -> None:
        mode = self._body_mode
        if not mode:
            self.conn.send_body(chunk)
        elif mode == _BODY_PROCESS:
            processor = self._processor
            if processor is not None and not processor.body(chunk):
                # The processor answered (an error): the rest of this response is not wanted.
                self._finished = True
                self._cancel_timers()
                self._close_processor()
                self._drop_upstream()

    def upstream_data_done(self) -> None:
        self.conn.flush()

    def upstream_trailers(self, trailers: Headers) -> None:
        if self._body_mode == _BODY_RELAY:
            self.conn.send_trailers(trailers)

    def upstream_end(self, keep_alive: bool) -> None:
        upstream = self.upstream
        self.upstream = None
        self._finished = True
        self._cancel_timers()
        if self._span is not None:
            end_call(self._span, self._status)
        if upstream is not None:
            if keep_alive and self._request_done:
                # (an HTTP/2 stream always ends with keep_alive False: its connection is the pool's)
                self.worker.pool.release(upstream)  # type: ignore[arg-type]
            else:
                upstream.close()
        processor = self._processor
        if processor is not None:
            ended = not processor.end()
            self._close_processor()
            if ended:
                return
        self.conn.end_response()

    def _close_processor(self) -> None:
        processor = self._processor
        if processor is not None:
            self._processor = None
            self._body_mode = _BODY_DROP
            processor.close()

    def upstream_failed(self, status: int, message: str) -> None:
        upstream = self.upstream
        self.upstream = None
        if self._finished:
            return
        if self._response_started:
            if self._span is not None:
                end_call(self._span, self._status, message)
            self._finished = True
            self._cancel_timers()
            self._close_processor()
            self.ctx.error = message
            self.conn.abort()
            return
        if (
            upstream is not None
            and not upstream.received
            and not self._stale_retried
            and (upstream.unprocessed or (upstream.reused and self.ctx.method in IDEMPOTENT))
            and (self._replay is not None or not self.ctx.has_body)
        ):
            # A pooled connection the upstream had closed while idle, or a stream it refused:
            # the backend is not to blame; send again on a fresh connection. A written request
            # that is not idempotent is not sent again unless the upstream said it did not act
            # on it: an upstream that took a POST, acted on it and closed before answering would
            # get it twice (the retry policy decides about those).
            self._stale_retried = True
            self._reset_body()
            target = self.target
            assert target is not None
            self._connect_task = self.worker.loop.create_task(self._connect_and_attach(target))
            return
        self._attempt_failed(status, message, upstream is not None and upstream.received)

    def upstream_write_paused(self) -> None:
        self.conn.pause_request_body(PAUSE_UPSTREAM)
        if self._clock is not None:
            self._clock.held_since = self.worker.loop.time()
        # While the upstream takes no body the client's clocks stop (server/http1.py): without
        # this deadline an upstream that never opens its window would hold the request forever.
        limit = self.route.head_timeout
        if limit is not None and not self._awaiting_head and not self._response_started and not self._finished:
            self._awaiting_head = self._stalled = True
            self.conn.expect_response(limit)

    def upstream_write_resumed(self) -> None:
        self.conn.resume_request_body(PAUSE_UPSTREAM)
        clock = self._clock
        if clock is not None and clock.held_since:
            clock.held += self.worker.loop.time() - clock.held_since
            clock.held_since = 0.0
        if self._stalled:
            self._stalled = False
            if self._awaiting_head and not self._request_done:
                self._awaiting_head = False
                self.conn.response_arrived()

    def _fail(self, status: int, message: str) -> None:
        if self._span is not None:
            end_call(self._span, self._status, message)
        self._finished = True
        self._cancel_timers()
        self._drop_upstream()
        self.ctx.error = message
        self.conn.reply(self.ctx, status, message)
