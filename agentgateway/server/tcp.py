"""Connections of TCP and TLS listeners: each one is relayed byte for byte to a backend of the
listener's ``tcpRoutes`` (proxy/tunnel.py).

- TCP: the listener's one route without hostnames; the backend is connected at once and what the
  client sends meanwhile waits (bounded; reading pauses beyond it).
- TLS passed through (a TLS listener without ``tls``): the ClientHello is read from the raw bytes
  (server/tls_hello.py) within ``frontendPolicies.tls.handshakeTimeout``; its server name picks
  the listener and the route, and every byte, the hello included, goes to the backend, which
  terminates TLS with its own certificate. An unknown name gets a TLS ``unrecognized_name`` alert
  and the connection is closed; bytes that are not a ClientHello close it at once.
- TLS terminated (a TLS listener with ``tls``): the handshake is the worker's, with the certificate
  of the listener the SNI names; the plaintext is relayed.

One ``RequestCtx`` per connection carries its names, addresses and byte counts to the access log
and the metrics, as a request's does.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, cast

from agentgateway.core.context import RequestCtx
from agentgateway.proxy.tunnel import Tunnel
from agentgateway.server.tls_hello import HelloError, HelloReader
from agentgateway.upstream.pool import UpstreamConnectError
from agentgateway.upstream.tcp import OpeningStream, open_stream

if TYPE_CHECKING:
    from agentgateway.server.host import ConnectionHost, ServedBind
    from agentgateway.upstream.target import HttpTarget

# A fatal TLS alert, unrecognized_name (RFC 6066 §3), in a TLS 1.2 record: what a client that
# named a host this gateway does not route reads before the connection closes.
_UNRECOGNIZED_NAME = b"\x15\x03\x03\x00\x02\x02\x70"
# Client bytes kept while the backend connection is being made; reading pauses beyond them.
_PENDING_LIMIT = 256 * 1024

# What the connection waits for (the worker's sweep checks it): the ClientHello, or a quiet tunnel.
_WAIT_HELLO, _WAIT_TUNNEL = 1, 2


class StreamConnection(asyncio.Protocol):
    __slots__ = (
        "worker",
        "bind",
        "passthrough",
        "transport",
        "client_ip",
        "client_port",
        "ctx",
        "closed",
        "deadline",
        "deadline_kind",
        "_pending",
        "_pending_size",
        "_hello",
        "_routed",
        "_connecting",
        "_tunnel",
        "_client_eof",
        "_observed",
        "client_cert",
    )

    def __init__(self, worker: ConnectionHost, bind: ServedBind, passthrough: bool) -> None:
        self.worker = worker
        self.bind = bind
        # A TLS listener that passes TLS through: the route waits for the ClientHello's name.
        self.passthrough = passthrough
        self.transport: asyncio.Transport | None = None
        # The client's address: the peer's, or what a PROXY protocol header named (set before).
        self.client_ip = ""
        self.client_port = 0
        self.ctx: RequestCtx | None = None
        self.closed = False
        self.deadline = 0.0
        self.deadline_kind = 0
        self._pending: list[bytes] = []
        self._pending_size = 0
        # Passthrough: the ClientHello read so far (its bytes are also kept in ``_pending``).
        self._hello = HelloReader() if passthrough else None
        self._routed = False
        # The TLS client presented a certificate (a listener with tls.root requires one).
        self.client_cert = False
        self._connecting: asyncio.Task[None] | None = None
        self._tunnel: Tunnel | None = None
        self._client_eof = False
        self._observed = False

    # ------------------------------------------------------------------ asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        if not self.client_ip:
            peer = transport.get_extra_info("peername") or ("", 0)
            self.client_ip, self.client_port = peer[0], peer[1]
        sslobj = transport.get_extra_info("ssl_object")
        server_name: bytes | None = None
        if sslobj is not None:
            name = getattr(sslobj, "agw_sni", None)
            server_name = name.lower().encode() if name else None
            self.client_cert = sslobj.getpeercert(binary_form=True) is not None
        self.ctx = RequestCtx(
            b"",
            b"",
            b"",
            b"",
            b"",
            [],
            "",
            False,
            None,
            False,
            False,
            self.client_ip,
            self.client_port,
            b"tls" if self.passthrough or sslobj is not None else b"tcp",
            time.perf_counter(),
            self.bind.gateway,
        )
        worker = self.worker
        worker.connections.add(self)
        if self.passthrough:
            self.deadline = worker.loop.time() + worker.runtime.limits.tls_handshake_timeout
            self.deadline_kind = _WAIT_HELLO
        else:
            self._route(server_name)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self._pending.append(data)
        self._pending_size += len(data)
        if self._routed:
            if self._pending_size > _PENDING_LIMIT and self.transport is not None:
                self.transport.pause_reading()
            return
        reader = self._hello
        if reader is None:
            return
        try:
            hello = reader.feed(data)
        except HelloError as exc:
            self._fail(f"invalid TLS ClientHello: {exc}")
            return
        if hello is None:
            return
        self._hello = None
        self.deadline_kind = 0
        # The client now waits for the backend's ServerHello: nothing more to read meanwhile.
        if self.transport is not None:
            self.transport.pause_reading()
        self._route(hello.server_name)

    def eof_received(self) -> bool | None:
        if not self._routed:
            self._fail("the client closed before its TLS ClientHello was complete")
            return None
        self._client_eof = True
        return True  # the tunnel passes the half-close on once it runs

    def connection_lost(self, exc: Exception | None) -> None:
        # (Once the tunnel runs, its protocol gets this.) A connect in flight is not cancelled:
        # it ends within its timeout and drops the upstream connection it made.
        if not self.closed:
            self._end(f"the client closed the connection{f': {exc}' if exc else ''}")

    # ------------------------------------------------------------------ routing and relay

    def _route(self, server_name: bytes | None) -> None:
        self._routed = True
        ctx = self.ctx
        assert ctx is not None
        if server_name:
            ctx.host = server_name
        found = self.worker.stream_route(self, server_name)
        if found is None:
            name = (server_name or b"").decode("latin-1")
            self._fail(f"no {self.bind.gateway} listener for server name {name!r}", _UNRECOGNIZED_NAME)
            return
        listener, route = found
        ctx.listener = listener
        if route is None:
            name = (server_name or b"").decode("latin-1")
            self._fail(f"no TCP route of listener {listener} for server name {name!r}", _UNRECOGNIZED_NAME)
            return
        ctx.route = route.name
        target = route.backends.pick()
        if target is None:
            self._fail(f"route {route.name} has no backends")
            return
        ctx.backend = target.label
        self._connecting = self.worker.loop.create_task(self._connect(target))

    async def _connect(self, target: HttpTarget) -> None:
        try:
            upstream, opening = await open_stream(self.worker.loop, target)
        except UpstreamConnectError as exc:
            self._connecting = None
            self._fail(exc.message)
            return
        self._connecting = None
        if self.closed or self.transport is None or opening.lost:
            upstream.abort()
            if not self.closed:
                self._fail(f"upstream {target.label} closed the connection at once")
            return
        self._relay(upstream, opening)

    def _relay(self, upstream: asyncio.Transport, opening: OpeningStream) -> None:
        transport = self.transport
        assert transport is not None
        tunnel = self._tunnel = Tunnel(transport, upstream, self._tunnel_ended)
        early = b"".join(self._pending)
        self._pending = []
        self._pending_size = 0
        self.deadline = self.worker.loop.time()
        self.deadline_kind = _WAIT_TUNNEL
        tunnel.start(early, opening.early)
        # Half-closes that happened before the tunnel ran.
        if self._client_eof and not tunnel.client.eof:
            tunnel.end_eof(tunnel.client)
        if opening.eof and not tunnel.upstream.eof:
            tunnel.end_eof(tunnel.upstream)

    def _tunnel_ended(self, tunnel: Tunnel) -> None:
        ctx = self.ctx
        if ctx is not None:
            ctx.request_bytes = tunnel.from_client
            ctx.response_bytes = tunnel.from_upstream
        self._tunnel = None
        self._end(tunnel.error)

    # ------------------------------------------------------------------ endings

    def _fail(self, reason: str, alert: bytes = b"") -> None:
        """Refuse the connection (nothing reached a backend): log why and close."""
        transport = self.transport
        if self.closed:
            return
        if transport is not None and not transport.is_closing():
            if alert and self.passthrough:
                transport.write(alert)
            transport.close()
        ctx = self.ctx
        if ctx is not None:
            ctx.reason = reason
        self._end("")

    def _end(self, error: str) -> None:
        self.closed = True
        self.deadline_kind = 0
        self.worker.connections.discard(self)
        ctx = self.ctx
        if ctx is None or self._observed:
            return
        self._observed = True
        if error and not ctx.error:
            ctx.error = error
        self.worker.observe_connection(ctx)

    # ------------------------------------------------------------------ the worker's sweep

    def check_deadline(self, now: float) -> None:
        kind = self.deadline_kind
        if kind == _WAIT_TUNNEL:
            tunnel = self._tunnel
            if tunnel is not None:
                elapsed, self.deadline = now - self.deadline, now
                tunnel.check_idle(elapsed, self.worker.runtime.limits.tunnel_idle_timeout)
        elif kind == _WAIT_HELLO and now >= self.deadline:
            timeout = self.worker.runtime.limits.tls_handshake_timeout
            self._fail(f"no complete TLS ClientHello within {timeout:g}s")

    def retire(self, reason: str) -> None:
        """Every connection of a TCP or TLS listener is a relay, or about to become one: cut."""
        tunnel = self._tunnel
        if tunnel is not None:
            tunnel.abort(reason)
        elif not self.closed:
            self._fail(reason)

    def close_if_idle(self) -> bool:
        """Draining: a connection still waiting for its ClientHello is closed; a relay runs on
        until it ends or the termination deadline cuts it."""
        if not self._routed and not self.closed:
            self._fail("the gateway is shutting down")
            return True
        return False
