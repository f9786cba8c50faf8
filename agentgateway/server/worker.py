"""A worker process: one uvloop loop serving every bind, driven by the supervisor.

The supervisor sends the config text over the control socket; the worker compiles it, opens
its own SO_REUSEPORT listening sockets and serves. A later config is applied by swapping the IR:
connections read the current bind IR at the start of each request, so requests in flight
finish on the config they started with. SIGTERM drains: stop accepting, let in-flight requests
finish (up to the termination deadline), close, exit.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import gc
import logging
import os
import signal
import socket
import ssl
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

import orjson
import uvloop

from agentgateway.a2a.facts import A2aFacts
from agentgateway.config.compile import compile_config
from agentgateway.config.errors import ConfigError
from agentgateway.config.ir import BindRuntime, HealthState, ListenerRuntime, RuntimeConfig
from agentgateway.config.loader import decode_config
from agentgateway.core.context import RequestCtx
from agentgateway.core.exchange import DISCARD, Exchange, ResponseWriter
from agentgateway.core.reply import DEFER
from agentgateway.llm.config import LlmService
from agentgateway.llm.exchange import LlmExchange, LlmFacts
from agentgateway.mcp.config import McpService
from agentgateway.mcp.endpoint import McpExchange
from agentgateway.mcp.protocol import KNOWN_METHODS as KNOWN_MCP_METHODS
from agentgateway.mcp.runtime import McpRuntime
from agentgateway.observe.accesslog import AccessLog, OtlpLogs
from agentgateway.observe.counters import COUNTERS
from agentgateway.observe.log import access_log_enabled, setup_logging
from agentgateway.observe.metrics import RequestMetrics
from agentgateway.observe.otlp import OtlpExporter
from agentgateway.observe.tracing import Tracer, request_variables
from agentgateway.policy import buckets
from agentgateway.policy.chain import respond
from agentgateway.proxy.forward import HttpForward
from agentgateway.routing.route import CompiledRoute
from agentgateway.routing.tcp import CompiledTcpRoute
from agentgateway.server import control
from agentgateway.server.deferred import DeferredExchange
from agentgateway.server.forwarded import client_address
from agentgateway.server.host import ClientConnection, ServedConnection
from agentgateway.server.http1 import HttpConnection
from agentgateway.server.http2 import Http2Connection
from agentgateway.server.listeners import listen_socket, set_keepalive, sni_selector
from agentgateway.server.negotiate import client_protocol
from agentgateway.server.proxy_protocol import Address, ProxyProtocolListener
from agentgateway.server.tcp import StreamConnection
from agentgateway.upstream.client import HttpClient
from agentgateway.upstream.http2 import Http2Pool
from agentgateway.upstream.pool import UpstreamPool
from agentgateway.upstream.relay import BIND_HEADER, CEL_VARS_HEADER, IDENTITY_HEADER, TRACE_HEADER, worker_socket

log = logging.getLogger("agentgateway.worker")

_TICK = 0.1  # access-log flush period; deadlines are checked every 5 ticks


def _label_value(value: object) -> str:
    """A metric label from an expression: its text, ``unknown`` when it is not a string."""
    return value if isinstance(value, str) else "unknown"


def client_auth(bind: BindRuntime) -> tuple[object, ...] | None:
    """How a TLS port checks client certificates: the certificate request of its first context
    and each listener's roots. Every handshake of the port starts on the context the port was
    opened with, and the SNI callback only switches the certificate and verification to the
    listener's current one: OpenSSL keeps the first context's certificate request (see
    compile.share_client_certificate_requests), session cache and ticket key. A session made
    before a reload would resume after it without its certificate being checked against the
    roots now configured (a client of a CA the reload removed kept getting in), so a reload that
    changes any of this reopens the port: new sessions, and old connections retire."""
    default_ctx = bind.default_listener.ssl_context
    if not bind.tls or default_ctx is None:
        return None
    roots = []
    for listener in bind.listeners.values():
        ctx = listener.ssl_context
        if ctx is not None and ctx.verify_mode != ssl.CERT_NONE:
            roots.append((listener.name, ctx.verify_mode, tuple(ctx.get_ca_certs(binary_form=True))))
    return (default_ctx.verify_mode, tuple(sorted(roots)))


class BindHandle:
    """One listening port in this worker and the IR it currently serves. The relay socket
    (``internal``) serves every bind: the port comes with each relayed request."""

    __slots__ = ("port", "runtime", "gateway", "server", "tls", "internal", "proxied", "sock", "client_auth")

    def __init__(self, runtime: BindRuntime, internal: bool = False) -> None:
        self.port = runtime.port
        self.runtime = runtime
        self.gateway = f"bind/{runtime.port}"
        self.server: asyncio.Server | ProxyProtocolListener | None = None
        self.tls = runtime.tls
        # How the port's handshakes check client certificates (a reload that changes it reopens
        # the port: client_auth below).
        self.client_auth = client_auth(runtime)
        self.internal = internal
        # Connections start with a PROXY protocol header (frontendPolicies.proxyProtocol).
        self.proxied = False
        # the listening socket (its options are set again on a reload)
        self.sock: socket.socket | None = None


class Worker:
    def __init__(self, loop: asyncio.AbstractEventLoop, runtime: RuntimeConfig, index: int) -> None:
        self.loop = loop
        self.runtime = runtime
        self.index = index
        static = runtime.static
        self.pool = UpstreamPool(loop, static.pool_idle_timeout, static.pool_max_size)
        self.h2_pool = Http2Pool(loop, static.pool_idle_timeout)
        self.metrics = RequestMetrics()
        self.access_log = AccessLog(static.log_format, access_log_enabled(static.log_level))
        self.tracer: Tracer | None = None  # set by apply() when tracing is configured
        self._reported_drops: dict[tuple[str, str], int] = {}
        self._needs_variables = False  # some log, trace or metric expression reads the request
        # config.metrics.fields.add: fixed at start (the supervisor's series have these labels).
        self._metric_labels = runtime.metric_settings.labels
        self.connections: set[ServedConnection] = set()
        self.binds: dict[int, BindHandle] = {}
        self.draining = False
        self._ticker: asyncio.Task[None] | None = None
        self._mcp: McpRuntime | None = None
        self.http_client = HttpClient(self.pool)  # the gateway's own calls (LLM providers, webhooks)
        self._relay: BindHandle | None = None
        # Set by the control loop: tells the supervisor (and through it every worker) a thing.
        self.announce: Callable[[dict[str, Any]], None] = lambda message: None

    @property
    def mcp(self) -> McpRuntime:
        """MCP sessions and upstream clients, made on first use (most routes never need them)."""
        if self._mcp is None:
            self._mcp = McpRuntime(self)
        return self._mcp

    # ------------------------------------------------------------------ request path

    def dispatch(self, conn: ClientConnection, ctx: RequestCtx) -> Exchange:
        """Choose what serves this request: its route's backend, or a local reply."""
        tracer = self.tracer
        # This worker made the connection with one of its BindHandles (the server only knows
        # the ServedBind part of it).
        handle: BindHandle = conn.bind  # type: ignore[assignment]
        internal = handle.internal
        if tracer is not None:
            if internal:
                tracer.continue_relayed(ctx, ctx.header(TRACE_HEADER))
            else:
                tracer.begin(ctx)
        bind = handle.runtime
        if internal:
            relayed = self._relayed_bind(ctx)
            if relayed is None:
                conn.reply(ctx, 404, "relayed request for a port this worker does not serve")
                return DISCARD
            bind = relayed
        listener: ListenerRuntime | None
        if bind.tls and not internal:
            # The TLS handshake chose the listener (its certificate, its client-certificate
            # check): by SNI, else the default one. The host of the request must be that
            # listener's, or a client could pass the handshake of a lax listener and name a
            # strict one's host (no SNI, another SNI, or a second authority on a reused HTTP/2
            # connection). As agentgateway (Gateway API GEP-1486): 421 when another listener
            # of the port takes the host (the client retries on a connection of its own),
            # 404 when none does.
            sni = conn.sni
            listener = (bind.listeners.select(sni) if sni is not None else None) or bind.default_listener
            # (An HTTP/1.0 request without Host names no host: the handshake's listener serves it.)
            by_host = bind.listeners.select(ctx.host) if ctx.host else listener
            if by_host is not listener:
                if by_host is None:
                    listener = None
                else:
                    conn.reply(
                        ctx,
                        421,
                        f"misdirected request: host {ctx.host.decode('latin-1')!r} is served by listener "
                        f"{by_host.name}, this connection was made for listener {listener.name}",
                    )
                    return DISCARD
            if listener is not None and listener.client_certs and not conn.client_cert:
                # A resumed session made with another listener of the port (they share OpenSSL's
                # session cache and ticket key) skipped this listener's certificate request.
                conn.reply(
                    ctx,
                    421,
                    f"misdirected request: listener {listener.name} requires a client certificate and this "
                    "connection presented none (a session resumed from another listener)",
                )
                return DISCARD
        else:
            listener = bind.listeners.select(ctx.host)
        if listener is None:
            conn.reply(ctx, 404, f"no listener on port {bind.port} for host {ctx.host.decode('latin-1')!r}")
            return DISCARD
        ctx.listener = listener.name
        rule = listener.routes.select_rule(ctx.host, ctx.method, ctx.path, ctx.headers, ctx.query)
        if rule is None:
            conn.reply(
                ctx,
                404,
                f"route not found: no route of listener {listener.name} matches "
                + (b"%s %s%s" % (ctx.method, ctx.host, ctx.path)).decode("latin-1"),
            )
            return DISCARD
        route = rule.route
        ctx.route = route.name
        ctx.match_prefix = rule.match_prefix
        chain = route.chain
        policies = chain.request
        # A request relayed by another worker of this gateway (an MCP session it owns) passed the
        # route's request policies there; running them again would count it twice.
        if policies and not internal:
            first_async = chain.first_async
            if first_async < 0:
                # The common case: synchronous policies only, run in a plain loop.
                for policy in policies:
                    reply = policy.on_request(ctx)  # type: ignore[union-attr]
                    if reply is not None:
                        if reply is DEFER:  # this policy must wait for I/O this time
                            return DeferredExchange(self, conn, ctx, route, policies.index(policy), resume=True)
                        respond(conn, ctx, reply, chain)
                        return DISCARD
            else:
                for i in range(first_async):
                    reply = policies[i].on_request(ctx)  # type: ignore[union-attr]
                    if reply is not None:
                        if reply is DEFER:
                            return DeferredExchange(self, conn, ctx, route, i, resume=True)
                        respond(conn, ctx, reply, chain)
                        return DISCARD
                return DeferredExchange(self, conn, ctx, route, first_async)
        return self.forward(conn, ctx, route)

    def forward(self, conn: ResponseWriter, ctx: RequestCtx, route: CompiledRoute) -> Exchange:
        """Call the route's backend (the policy chain has let the request through)."""
        if route.no_backends:
            if route.unavailable:
                conn.reply(ctx, 503, f"route {route.name}: no healthy endpoints")
            else:
                conn.reply(ctx, 500, f"route {route.name} has no backends")
            return DISCARD
        if route.mcp_backends:
            target = route.backends.pick()
            if target is not None and target.kind == "mcp":
                assert isinstance(target, McpService)
                ctx.backend = target.label
                exchange = McpExchange(self.mcp, conn, ctx, target, route)
                exchange.start()
                return exchange
        if route.llm_backends:
            service = route.backends.pick()
            if service is not None and service.kind == "llm":
                assert isinstance(service, LlmService)
                ctx.backend = service.label
                llm = LlmExchange(self.http_client, conn, ctx, service, self.runtime.limits.max_buffer_size, route)
                llm.start()
                return llm
        forward = HttpForward(self, conn, ctx, route)
        forward.start()
        return forward

    def stream_route(
        self, conn: StreamConnection, server_name: bytes | None
    ) -> tuple[str, CompiledTcpRoute | None] | None:
        """The listener and TCP route of a TCP or TLS connection (by the client's SNI)."""
        bind = cast(BindHandle, conn.bind).runtime
        if bind.protocol == "TCP":
            listener: ListenerRuntime | None = bind.default_listener
        else:
            listener = bind.listeners.select(server_name or b"")
        if listener is None or listener.tcp_routes is None:
            return None
        if listener.client_certs and not conn.client_cert:
            return None  # it requires a certificate; this connection presented none (see dispatch)
        return listener.name, listener.tcp_routes.select(server_name)

    def observe_connection(self, ctx: RequestCtx) -> None:
        """A relayed connection ended: counted by listener, route and protocol (connections, bytes
        each way), and one access-log line."""
        duration = time.perf_counter() - ctx.start
        labels = (ctx.gateway, ctx.listener, ctx.route, ctx.scheme.decode("latin-1"))
        COUNTERS.inc("agentgateway_downstream_connections", labels)
        COUNTERS.inc("agentgateway_downstream_received_bytes", labels, ctx.request_bytes)
        COUNTERS.inc("agentgateway_downstream_sent_bytes", labels, ctx.response_bytes)
        tracer = self.tracer
        if tracer is not None:
            tracer.finish_connection(ctx, request_variables(ctx) if self._needs_variables else None)
        if self.access_log.enabled or self.access_log.otlp is not None:
            self.access_log.record_connection(ctx, duration)

    def _relayed_bind(self, ctx: RequestCtx) -> BindRuntime | None:
        value = ctx.header(BIND_HEADER)
        if value is None or not value.isdigit():
            return None
        bind = self.runtime.binds.get(int(value))
        if bind is not None:
            ctx.gateway = f"bind/{bind.port}"
            # The relaying worker appended its peer last, after the chain of any proxy it trusted:
            # the client is found in it as that worker found it.
            forwarded = ctx.header(b"x-forwarded-for")
            if forwarded:
                ctx.peer_ip = forwarded.rsplit(b",", 1)[-1].strip().decode("latin-1")
                ctx.client_ip = client_address(forwarded, self.runtime.limits.trusted_proxies) or ctx.peer_ip
            for name, value in ctx.headers:
                if name == IDENTITY_HEADER:
                    try:
                        ctx.identity = bytes.fromhex(value.decode("latin-1")).decode()
                    except (ValueError, UnicodeDecodeError):
                        ctx.identity = ""
                elif name == CEL_VARS_HEADER:
                    try:
                        learned = orjson.loads(base64.b64decode(value))
                    except (ValueError, orjson.JSONDecodeError):
                        learned = None
                    ctx.cel_vars = learned if isinstance(learned, dict) else None
        return bind

    async def open_relay_socket(self) -> None:
        """The socket other workers relay requests to (upstream/relay.py)."""
        path = worker_socket(str(os.getpid()))
        if path is None or not self.runtime.binds:
            return
        first = next(iter(self.runtime.binds.values()))
        handle = BindHandle(first, internal=True)
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        handle.server = await self.loop.create_unix_server(lambda: HttpConnection(self, handle), str(path))
        self._relay = handle

    def observe(self, ctx: RequestCtx) -> None:
        """The request is over: metrics and the access-log line."""
        if ctx.relayed and not ctx.reason:
            return  # the owning worker logged and counted it
        duration = time.perf_counter() - ctx.start
        ctx.end = duration
        extra = request_variables(ctx) if self._needs_variables else None
        key: tuple[object, ...] = (ctx.gateway, ctx.listener, ctx.route, ctx.backend, ctx.method, ctx.status)
        if self._metric_labels:
            key = (*key, *(_label_value(evaluate(ctx, extra)) for _, evaluate in self._metric_labels))
        trace = ctx.trace
        if trace is None:
            self.metrics.observe(key, duration)
        else:
            # A traced request is the exemplar of its latency bucket (its trace id on the histogram).
            self.metrics.observe(key, duration, f"{trace.trace_id:032x}" if trace.sampled else "")
        method = ctx.mcp_method
        if method:
            tool = ctx.mcp_resource if method == "tools/call" else ""
            if method not in KNOWN_MCP_METHODS:
                method = "unknown"
            self.metrics.observe_mcp((ctx.route, method, ctx.mcp_target, tool))
        llm = ctx.llm
        if llm is not None and isinstance(llm, LlmFacts):
            self._observe_llm(ctx, llm, duration)
        a2a = ctx.a2a
        if a2a is not None and isinstance(a2a, A2aFacts) and (a2a.method or a2a.error_code):
            COUNTERS.inc(
                "agentgateway_a2a_requests",
                (
                    ctx.gateway,
                    ctx.listener,
                    ctx.route,
                    a2a.method,
                    a2a.binding,
                    a2a.task_state,
                    a2a.outcome_code(ctx.status),
                ),
            )
        access_log = self.access_log
        tracer = self.tracer
        if access_log.enabled or access_log.otlp is not None or tracer is not None:
            if access_log.enabled or access_log.otlp is not None:
                access_log.record(ctx, duration, extra)
            if tracer is not None:
                if ctx.trace is None:
                    tracer.begin(ctx)  # refused before it was dispatched (a malformed request)
                tracer.finish(ctx, duration, extra)

    def _observe_llm(self, ctx: RequestCtx, llm: LlmFacts, duration: float) -> None:
        key = (llm.operation, llm.provider, llm.request_model, llm.response_model, ctx.route)
        metrics = self.metrics
        usage = llm.usage
        if usage.known:
            metrics.observe_genai("agentgateway_gen_ai_client_token_usage", (*key, "input"), usage.input_tokens)
            metrics.observe_genai("agentgateway_gen_ai_client_token_usage", (*key, "output"), usage.output_tokens)
        error = llm.error_type or (str(ctx.status) if ctx.status >= 400 else "")
        metrics.observe_genai("agentgateway_gen_ai_server_request_duration", (*key, error), duration)
        if llm.stream and llm.ttft:
            metrics.observe_genai("agentgateway_gen_ai_server_time_to_first_token", key, llm.ttft)

    def log_internal_error(self, what: str, exc: BaseException) -> None:
        log.error("%s: %r", what, exc, exc_info=exc)

    # ------------------------------------------------------------------ config

    async def apply(self, runtime: RuntimeConfig) -> None:
        """Serve ``runtime``: open new binds first (so a failure leaves the old config serving),
        then swap the IR of kept binds and close removed ones."""
        opened: dict[int, BindHandle] = {}
        try:
            for port, bind in runtime.binds.items():
                old = self.binds.get(port)
                proxied = runtime.limits.proxy_protocol is not None
                if old is None or old.tls != bind.tls or old.proxied != proxied or old.client_auth != client_auth(bind):
                    opened[port] = await self._open(bind, runtime)
        except OSError as exc:
            for handle in opened.values():
                if handle.server is not None:
                    handle.server.close()
            raise ConfigError("binds", f"cannot listen: {exc.strerror or exc}") from None
        closed: list[BindHandle] = []
        for port, handle in list(self.binds.items()):
            if port not in runtime.binds or port in opened:
                if handle.server is not None:
                    handle.server.close()
                closed.append(handle)
                del self.binds[port]
        for port, bind in runtime.binds.items():
            if port in opened:
                self.binds[port] = opened[port]
            else:
                handle = self.binds[port]
                handle.runtime = bind
                if handle.sock is not None:
                    set_keepalive(handle.sock, runtime.limits.keepalive)
        self.runtime = runtime
        self._retire_connections(closed, runtime)
        self.pool.idle_timeout = runtime.static.pool_idle_timeout
        self.h2_pool.idle_timeout = runtime.static.pool_idle_timeout
        self.pool.max_idle = runtime.static.pool_max_size
        self._apply_telemetry(runtime)

    def _apply_telemetry(self, runtime: RuntimeConfig) -> None:
        """Tracing and the access log's shape and OTLP export, as the new config says; an
        exporter is kept when its collector did not change."""
        settings = runtime.tracing
        tracer = self.tracer
        # A replaced exporter finishes its queue in its own thread: a reload never waits for it.
        if settings is None:
            if tracer is not None:
                tracer.exporter.close(timeout=0.0)
            self.tracer = None
        elif tracer is not None and tracer.settings.export_key() == settings.export_key():
            tracer.update(settings)
        else:
            if tracer is not None:
                tracer.exporter.close(timeout=0.0)
            self.tracer = Tracer(settings, OtlpExporter(settings.target, "traces", settings.resource))
        log_settings = runtime.access_log
        access_log = self.access_log
        access_log.shape = log_settings.shape if log_settings is not None else None
        wanted = log_settings.otlp if log_settings is not None else None
        current = access_log.otlp
        if wanted is None:
            if current is not None:
                current.exporter.close(timeout=0.0)
            access_log.otlp = None
        elif current is not None and current.exporter.target.key() == wanted.target.key():
            current.shape = wanted.shape
        else:
            if current is not None:
                current.exporter.close(timeout=0.0)
            access_log.otlp = OtlpLogs(OtlpExporter(wanted.target, "logs", wanted.resource), wanted.shape)
        self._needs_variables = (
            access_log.needs_cel
            or (self.tracer is not None and (bool(self.tracer.settings.add) or self.tracer.settings.filter is not None))
            or bool(self._metric_labels)
        )

    def _report_exports(self) -> None:
        """Records the exporters dropped since the last report, into the counters table (the
        exporter threads never touch it: a scrape reads it on this thread)."""
        exporters: list[OtlpExporter] = []
        if self.tracer is not None:
            exporters.append(self.tracer.exporter)
        if self.access_log.otlp is not None:
            exporters.append(self.access_log.otlp.exporter)
        reported = self._reported_drops
        for exporter in exporters:
            traces = exporter.signal == "traces"
            family = "agentgateway_trace_spans_dropped" if traces else "agentgateway_log_records_dropped"
            for reason, total in (("queue_full", exporter.dropped_full), ("export_failed", exporter.dropped_failed)):
                key = (f"{exporter.signal}:{id(exporter)}", reason)
                delta = total - reported.get(key, 0)
                if delta > 0:
                    reported[key] = total
                    COUNTERS.inc(family, (reason,), float(delta))

    def _retire_connections(self, closed: list[BindHandle], runtime: RuntimeConfig) -> None:
        """After a reload: the connections of a bind that is gone (or reopened) finish what they
        serve and close, and their tunnels (upgrades, TCP and TLS relays) are cut, as agentgateway
        aborts a removed bind's connections: a relay has no request to finish, so it would run on
        through a port (or client-certificate roots) the config no longer has. HTTP/2 connections
        whose settings changed close too (a GOAWAY each: their clients reconnect and get the new
        ones). Other connections serve the new config."""
        for conn in list(self.connections):
            if any(conn.bind is handle for handle in closed):
                conn.retire(f"port {conn.bind.port} was closed (removed or reopened) by a reload")
            elif isinstance(conn, Http2Connection) and conn.settings_changed(runtime.limits):
                conn.close_if_idle()

    async def _open(self, bind: BindRuntime, runtime: RuntimeConfig) -> BindHandle:
        handle = BindHandle(bind)
        sock = handle.sock = listen_socket(bind.port)
        set_keepalive(sock, runtime.limits.keepalive)
        ssl_ctx: ssl.SSLContext | None = None
        if bind.tls:
            ssl_ctx = bind.default_listener.ssl_context
            assert ssl_ctx is not None
            ssl_ctx.sni_callback = sni_selector(lambda: handle.runtime)
        if runtime.limits.proxy_protocol is not None:
            # The PROXY header comes before TLS and HTTP: read from the socket before the loop
            # gets it (server/proxy_protocol.py).
            handle.proxied = True
            handle.server = ProxyProtocolListener(
                self.loop,
                sock,
                lambda client: self._accepted(handle, client),
                lambda: self.runtime.limits.proxy_protocol,
                ssl_ctx,
                runtime.limits.tls_handshake_timeout,
            )
            return handle
        handle.server = await self.loop.create_server(
            lambda: self._accepted(handle),
            sock=sock,
            ssl=ssl_ctx,
            ssl_handshake_timeout=runtime.limits.tls_handshake_timeout if ssl_ctx else None,
            backlog=4096,
        )
        return handle

    def _accepted(self, handle: BindHandle, client: Address | None = None) -> asyncio.Protocol:
        """The protocol of a connection accepted on ``handle``'s port, by what the port serves
        now (a reload may change it): HTTP/1.1 or HTTP/2 (server/negotiate.py), or relayed
        bytes. ``client``: the address a PROXY protocol header named."""
        protocol = handle.runtime.protocol
        if protocol == "HTTP":
            return client_protocol(self, handle, handle.tls, client)
        conn = StreamConnection(self, handle, passthrough=protocol == "TLS" and not handle.tls)
        if client is not None:
            conn.client_ip, conn.client_port = client
        return conn

    # ------------------------------------------------------------------ lifecycle

    def start_ticker(self) -> None:
        self._ticker = self.loop.create_task(self._tick())

    async def _tick(self) -> None:
        ticks = 0
        while True:
            await asyncio.sleep(_TICK)
            self.access_log.flush()
            ticks += 1
            if ticks % 10 == 0 and (self.tracer is not None or self.access_log.otlp is not None):
                self._report_exports()
            if ticks % 5 == 0:
                now = self.loop.time()
                for conn in list(self.connections):
                    conn.check_deadline(now)
                if ticks % 50 == 0:
                    self.pool.sweep(now)
                    self.h2_pool.sweep(now)
                    if self._mcp is not None:
                        self._mcp.sweep()

    async def drain(self) -> None:
        """Stop accepting, finish requests in flight (bounded by the termination deadline)."""
        if self.draining:
            return
        static = self.runtime.static
        if static.min_termination_deadline > 0:
            await asyncio.sleep(static.min_termination_deadline)
        self.draining = True
        for handle in (*self.binds.values(), *([self._relay] if self._relay else [])):
            if handle.server is not None:
                handle.server.close()
        deadline = self.loop.time() + static.termination_deadline
        while self.connections and self.loop.time() < deadline:
            for conn in list(self.connections):
                conn.close_if_idle()
            await asyncio.sleep(0.05)
        for conn in list(self.connections):
            if conn.transport is not None:
                conn.transport.abort()
        if self._mcp is not None:
            await self._mcp.close_all()  # stops stdio servers, ends upstream sessions
        self.pool.close_all()
        self.h2_pool.close_all()
        self.access_log.flush()
        # What is queued for the collector goes now (each exporter waits at most 2 s).
        if self.tracer is not None:
            self.tracer.close()
        if self.access_log.otlp is not None:
            self.access_log.otlp.exporter.close()
        self._report_exports()


async def _serve(control_fd: int, index: int, ratelimit_fd: int | None) -> int:
    loop = asyncio.get_running_loop()
    sock = socket.socket(fileno=control_fd)
    reader, writer = await asyncio.open_unix_connection(sock=sock)

    def send(message: dict[str, Any]) -> None:
        writer.write(control.encode(message))

    if ratelimit_fd is not None:
        buckets.attach(ratelimit_fd)
    first = await control.read_message(reader)
    if first is None or first.get("op") != "config":
        return 2
    try:
        runtime = _compile(first)
    except ConfigError as exc:
        send({"op": "error", "message": str(exc)})
        await writer.drain()
        return 2
    setup_logging(runtime.static.log_format, runtime.static.log_level, f"worker{index}")
    worker = Worker(loop, runtime, index)
    try:
        await worker.apply(runtime)
    except ConfigError as exc:
        send({"op": "error", "message": str(exc)})
        await writer.drain()
        return 2
    worker.announce = send
    await worker.open_relay_socket()
    worker.start_ticker()
    # Everything loaded so far (modules, the compiled config) lives as long as the worker: moved out
    # of the collector's reach, a full collection no longer walks it (~6 ms with the LLM modules,
    # paid by whichever request is in flight).
    gc.freeze()
    # The youngest generation is collected after 10,000 net allocations of tracked objects
    # (CPython's default: 700). Requests in flight and spans waiting for export are such objects,
    # and at the default the collector ran every ~100 traced requests, each time walking them
    # all: 4 µs of CPU per traced LLM call at c=32 (A/B, benchmarks/RESULTS.md). The older
    # generations keep their default ratios, so garbage cycles are still freed as often
    # relative to the young collections.
    gc.set_threshold(10_000, 10, 10)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the supervisor decides; Ctrl-C reaches it too
    send({"op": "ready", "pid": os.getpid(), "generation": first.get("generation", 0)})

    async def control_loop() -> None:
        while True:
            message = await control.read_message(reader)
            if message is None:
                return  # supervisor gone
            op = message.get("op")
            if op == "config":
                try:
                    await worker.apply(_compile(message, worker.runtime.health_state))
                except ConfigError as exc:
                    log.error("config not applied: %s", exc)
                    send({"op": "config_result", "generation": message.get("generation"), "error": str(exc)})
                else:
                    send({"op": "config_result", "generation": message.get("generation"), "error": None})
            elif op == "metrics":
                send(
                    {
                        "op": "metrics",
                        "id": message.get("id"),
                        "metrics": worker.metrics.snapshot(),
                        "counters": COUNTERS.snapshot(),
                    }
                )
            elif op == "state":
                send({"op": "state", "id": message.get("id"), "state": state_report(worker)})
            elif op == "drain":
                stop.set()
            elif op == "mcp_revoke" and worker._mcp is not None:
                created = message.get("created")
                worker._mcp.forget(str(message.get("sid")), created if isinstance(created, int) else 0)
            elif op == "mcp_touch" and worker._mcp is not None:
                sids = message.get("sids")
                if isinstance(sids, list):
                    worker._mcp.touched([str(sid) for sid in sids])

    control_task = loop.create_task(control_loop())
    stop_task = loop.create_task(stop.wait())
    await asyncio.wait((control_task, stop_task), return_when=asyncio.FIRST_COMPLETED)
    await worker.drain()
    if not control_task.done():
        send(
            {
                "op": "metrics",
                "id": "final",
                "metrics": worker.metrics.snapshot(),
                "counters": COUNTERS.snapshot(),
            }
        )
        with contextlib.suppress(TimeoutError, ConnectionError):
            await asyncio.wait_for(writer.drain(), 1.0)
        control_task.cancel()
    return 0


def state_report(worker: Worker) -> dict[str, Any]:
    """What the admin UI's overview shows of this worker: connections, MCP sessions (per backend,
    with the stdio processes they hold and each target's upstream sessions) and the passive health
    of upstream endpoints (ejected or not)."""
    services: dict[str, dict[str, Any]] = {}
    if worker._mcp is not None:
        for session in list(worker._mcp.sessions.values()):
            entry = services.setdefault(session.service.label, {"sessions": 0, "stdioProcesses": 0, "targets": {}})
            entry["sessions"] += 1
            for name, upstream in session.upstreams.items():
                target = entry["targets"].setdefault(name, {"kind": upstream.spec.kind, "open": 0, "closed": 0})
                connected = upstream.init_result is not None and not upstream.closed
                target["open" if connected else "closed"] += 1
                if connected and upstream.spec.kind == "stdio":
                    entry["stdioProcesses"] += 1
    now = worker.loop.time()  # the clock health records are kept on
    endpoints = [
        {
            "endpoint": f"{key[0]}:{key[1]}",
            "ejected": now < health.evicted_until,
            "ejections": health.ejections,
            "score": round(health.score, 3),
        }
        for key, health in worker.runtime.health_state.items()
        if len(key) >= 2
    ]
    return {
        "index": worker.index,
        "pid": os.getpid(),
        "connections": len(worker.connections),
        "mcpSessions": sum(entry["sessions"] for entry in services.values()),
        "mcp": services,
        "endpoints": endpoints,
    }


def _compile(message: dict[str, Any], health_state: HealthState | None = None) -> RuntimeConfig:
    base_dir = message.get("base_dir")
    return compile_config(decode_config(message["text"]), Path(base_dir) if base_dir else None, health_state)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="agentgateway-worker")
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--index", type=int, default=0)
    parser.add_argument("--ratelimit-fd", type=int, help="memfd of the host's shared token buckets")
    args = parser.parse_args(argv)
    return uvloop.run(_serve(args.control_fd, args.index, args.ratelimit_fd))


if __name__ == "__main__":
    sys.exit(main())
