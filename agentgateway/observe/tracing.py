"""Traces: the sampling decision, the W3C context a request continues and propagates, and the
spans of a sampled request (the server span and the gateway's own calls), queued for OTLP export.

Sampling follows agentgateway: a request that brings a valid ``traceparent`` is traced when its
sampled flag is set and ``clientSampling`` says so (default: yes); one that brings none is
traced when ``randomSampling`` says so (default: no). Each is a probability (0.0 to 1.0), a
boolean, or a CEL expression that evaluates to either. A constant probability is one
``random()`` per request: an unsampled request makes no span object.

What is propagated: a traced request's upstream gets ``traceparent`` naming the gateway's span
for that call; an untraced request that brought a ``traceparent`` passes it on unchanged; one
that brought none gets a new trace id with the sampled flag cleared, so services behind the
gateway see one trace id per request either way.

CEL is compiled by the config layer: this module receives plain callables (``Evaluate``) that
return a value, or None when the expression failed.
"""

from __future__ import annotations

import contextvars
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from agentgateway.core.trace import (
    CLIENT,
    INTERNAL,
    SERVER,
    STATUS_ERROR,
    TRACEPARENT,
    TRACESTATE,
    RequestTrace,
    Span,
    format_traceparent,
    new_span_id,
    parse_traceparent,
    parse_tracestate,
)
from agentgateway.observe.otlp import OtlpExporter, OtlpTarget, SpanRecord, hashed_session

# ``isinstance`` with a tuple: ``a | b`` would build a union object on every call.
_NUMBER = (int, float)

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx, RequestFacts

# A compiled expression: the request and its variables (``response``, ``llm``, ...) in, the
# value out (None when the evaluation failed or gave null).
Evaluate = Callable[["RequestCtx", dict[str, object] | None], object]
# A sampling rule: a constant probability, or an expression giving a probability or a boolean.
Sampling = float | Evaluate

_random = random.random
_bits = random.getrandbits

# The trace of the MCP request a task serves (mcp/ reads it where the targets are called).
CURRENT_TRACE: contextvars.ContextVar[RequestTrace | None] = contextvars.ContextVar("agw_trace", default=None)

_HTTP_VERSIONS = {"1.1": "1.1", "1.0": "1.0", "2": "2", "2.0": "2"}


class TracingSettings:
    """``config.tracing`` (or ``frontendPolicies.tracing``) compiled."""

    __slots__ = ("target", "resource", "random_sampling", "client_sampling", "add", "remove", "filter")

    def __init__(
        self,
        target: OtlpTarget,
        resource: dict[str, object],
        random_sampling: Sampling,
        client_sampling: Sampling,
        add: tuple[tuple[str, Evaluate], ...] = (),
        remove: frozenset[str] = frozenset(),
        filter: Evaluate | None = None,  # noqa: A002 - agentgateway's key
    ) -> None:
        self.target = target
        self.resource = resource
        self.random_sampling = random_sampling
        self.client_sampling = client_sampling
        self.add = add
        self.remove = remove
        self.filter = filter

    def export_key(self) -> tuple[object, ...]:
        """What needs a new exporter when it changes on reload."""
        return (self.target.key(), tuple(sorted((k, str(v)) for k, v in self.resource.items())))


def _decide(rule: Sampling, ctx: RequestCtx) -> bool:
    if isinstance(rule, float):
        return rule >= 1.0 or (rule > 0.0 and _random() < rule)
    value = rule(ctx, ctx.cel_vars)
    if isinstance(value, bool):
        return value
    if isinstance(value, _NUMBER):
        return value >= 1.0 or (value > 0.0 and _random() < value)
    return False


class Tracer:
    """A worker's tracing: decides, propagates, records and queues spans."""

    __slots__ = ("settings", "exporter", "_random", "_client")

    def __init__(self, settings: TracingSettings, exporter: OtlpExporter) -> None:
        self.settings = settings
        self.exporter = exporter
        rs, cs = settings.random_sampling, settings.client_sampling
        # Constant rules are read here once; expressions are evaluated per request.
        self._random = rs
        self._client = cs

    def update(self, settings: TracingSettings) -> None:
        """A reload that keeps the collector: new sampling and fields."""
        self.settings = settings
        self._random = settings.random_sampling
        self._client = settings.client_sampling

    # ------------------------------------------------------------------ request start

    def begin(self, ctx: RequestCtx) -> None:
        """Decide and propagate: sets ``ctx.trace`` and the ``traceparent`` the request carries
        on (the upstream sees it; a recorded call replaces it with its own span's id)."""
        headers = ctx.headers
        incoming: bytes | None = None
        count = 0
        for name, value in headers:
            if name == TRACEPARENT:
                incoming = value
                count += 1
        parsed = parse_traceparent(incoming) if count == 1 and incoming is not None else None
        if parsed is not None:
            trace_id, parent_id, flags = parsed
            sampled = bool(flags & 1) and _decide(self._client, ctx)
            states = [v for n, v in headers if n == TRACESTATE]
            state = parse_tracestate(states) if states else None
            trace = RequestTrace(trace_id, new_span_id(), parent_id, sampled, state)
            trace.sampled_by_client = True
            ctx.trace = trace
            if sampled:
                _set_header(ctx, trace.traceparent())
            # Not traced here: the client's traceparent goes on as it came (its span is the parent).
            return
        sampled = _decide(self._random, ctx)
        trace = RequestTrace(_bits(128) or 1, new_span_id(), 0, sampled, None)
        ctx.trace = trace
        if count:
            # Malformed (or repeated) traceparent: a new trace, and the client's tracestate goes
            # with the context it belonged to (W3C Trace Context §3.3).
            ctx.headers = [(n, v) for n, v in headers if n != TRACEPARENT and n != TRACESTATE]
        elif ctx.header(TRACESTATE) is not None:
            ctx.headers = [(n, v) for n, v in headers if n != TRACESTATE]
        ctx.headers.append((TRACEPARENT, format_traceparent(trace.trace_id, trace.span_id, sampled)))

    def continue_relayed(self, ctx: RequestCtx, value: bytes | None) -> None:
        """A request another worker of this gateway relayed (an MCP session this one owns): the
        trace context that worker made for it (``relayed_trace``), kept as it is, since it was
        already propagated and that worker records no span for it."""
        parts = value.split(b"-") if value is not None else []
        if len(parts) != 4:
            self.begin(ctx)
            return
        try:
            trace_id, span_id, parent_id = int(parts[0], 16), int(parts[1], 16), int(parts[2], 16)
        except ValueError:
            self.begin(ctx)
            return
        states = [v for n, v in ctx.headers if n == TRACESTATE]
        state = parse_tracestate(states) if states else None
        trace = RequestTrace(trace_id, span_id, parent_id, parts[3] == b"1", state)
        trace.sampled_by_client = bool(parent_id)
        ctx.trace = trace

    # ------------------------------------------------------------------ request end

    def finish(self, ctx: RequestCtx, duration: float, extra: dict[str, object] | None) -> None:
        """The request is over: its server span and the spans of its calls, queued for export."""
        trace = ctx.trace
        if trace is None or not trace.sampled:
            return
        settings = self.settings
        if settings.filter is not None and settings.filter(ctx, extra) is not True:
            for span in trace.spans:
                span.on_end = None  # not recorded: no cycle left for the collector
            return
        failed = ctx.status >= 500 or not ctx.status
        self._record(ctx, trace, span_name(ctx), server_attributes(ctx), extra, failed, ctx.error or ctx.reason)

    def finish_connection(self, ctx: RequestCtx, extra: dict[str, object] | None) -> None:
        """A relayed TCP or TLS connection (a ``tcpRoutes`` route) ended: one SERVER span from
        accept to close. Nothing carries a trace context on such a connection, so
        ``randomSampling`` decides (a CEL rule sees the source and the connection's names)."""
        if not _decide(self._random, ctx):
            return
        settings = self.settings
        if settings.filter is not None and settings.filter(ctx, extra) is not True:
            return
        trace = RequestTrace(_bits(128) or 1, new_span_id(), 0, True, None)
        ctx.trace = trace
        protocol = ctx.scheme.decode("latin-1")
        self._record(
            ctx,
            trace,
            f"{protocol} {ctx.route}" if ctx.route else protocol,
            connection_attributes(ctx),
            extra,
            bool(ctx.reason),  # refused: no backend was reached
            ctx.reason or ctx.error,
        )

    def _record(
        self,
        ctx: RequestCtx,
        trace: RequestTrace,
        name: str,
        attributes: dict[str, object],
        extra: dict[str, object] | None,
        failed: bool,
        message: str,
    ) -> None:
        """The server span (the configured fields applied) and the spans of its calls, queued."""
        settings = self.settings
        end_ns = time.time_ns()
        remove = settings.remove
        if remove:
            for key in remove:
                attributes.pop(key, None)
        for key, evaluate in settings.add:
            value = evaluate(ctx, extra)
            if value is None:
                continue
            if key == "span.name" and isinstance(value, str):
                name = value
            else:
                attributes[key] = value
        server = Span(name, SERVER, trace.span_id, trace.parent_id, attributes)
        # Both ends from this instant: the wall clock now, less the monotonic time since the head.
        server.start_ns = end_ns - int((time.perf_counter() - ctx.start) * 1e9)
        server.end_ns = end_ns
        if failed:
            server.status = STATUS_ERROR
            server.message = message
        state = trace.state
        trace_id = trace.trace_id
        # Encoded by the exporter thread, in batches (measured: cheaper than encoding here, on
        # the event loop, by ~10 µs per request at c=32).
        records: list[SpanRecord] = [(trace_id, server, state)]
        for span in trace.spans:
            if not span.end_ns:
                if span.on_end is not None:
                    span.on_end()
                if not span.end_ns:
                    span.end_ns = end_ns
            records.append((trace_id, span, state))
        self.exporter.offer_many(records)

    def close(self) -> None:
        self.exporter.close()


def relayed_trace(trace: RequestTrace) -> bytes:
    """What a relayed request carries to the worker that owns its session (``continue_relayed``)."""
    return b"%032x-%016x-%016x-%d" % (trace.trace_id, trace.span_id, trace.parent_id, trace.sampled)


def _set_header(ctx: RequestCtx, value: bytes) -> None:
    headers = ctx.headers
    for i, (name, _) in enumerate(headers):
        if name == TRACEPARENT:
            headers[i] = (TRACEPARENT, value)
            return
    headers.append((TRACEPARENT, value))


def span_name(ctx: RequestCtx) -> str:
    """``{mcp.method.name} {tool}`` for MCP, else ``{method} {route pattern}`` (HTTP
    conventions: the matched prefix, not the path, which may be unbounded)."""
    method = ctx.mcp_method
    if method:
        return f"{method} {ctx.mcp_resource}" if ctx.mcp_resource else method
    prefix = ctx.match_prefix
    verb = ctx.method.decode("latin-1")
    if prefix is not None:
        return f"{verb} {prefix.decode('latin-1')}"
    return verb


# Attributes whose text a client writes (path, query, User-Agent) keep at most this many bytes:
# a head may be 64 KiB, and up to 8192 spans wait for export when the collector is slow.
CLIENT_TEXT_MAX = 2048


def _client_text(value: bytes) -> str:
    return value[:CLIENT_TEXT_MAX].decode("latin-1")


def server_attributes(ctx: RequestCtx) -> dict[str, object]:
    """The server span's attributes: HTTP semantic conventions, the gateway's route identity,
    and what the backend rooms learned (MCP, GenAI, A2A)."""
    attributes: dict[str, object] = {
        "http.request.method": ctx.method.decode("latin-1"),
        "url.path": _client_text(ctx.path),
        "url.scheme": ctx.scheme.decode("latin-1"),
        "server.address": ctx.client_host.decode("latin-1"),
        "client.address": ctx.client_ip,
        "network.peer.address": ctx.peer_ip,
        "network.peer.port": ctx.client_port,
        "network.protocol.name": "http",
        "network.protocol.version": _HTTP_VERSIONS.get(ctx.version, ctx.version),
        "http.response.status_code": ctx.status,
        "gateway": ctx.gateway,
        "listener": ctx.listener,
        "route": ctx.route,
    }
    if ctx.query:
        attributes["url.query"] = _client_text(ctx.query)
    if ctx.match_prefix is not None:
        attributes["http.route"] = ctx.match_prefix.decode("latin-1")
    if ctx.backend:
        attributes["endpoint"] = ctx.backend
    user_agent = ctx.header(b"user-agent")
    if user_agent is not None:
        attributes["user_agent.original"] = _client_text(user_agent)
    if ctx.status >= 500:
        attributes["error.type"] = str(ctx.status)
    if ctx.reason:
        attributes["reason"] = ctx.reason
    if ctx.error:
        attributes["error"] = ctx.error
    if ctx.status == 101:
        # An accepted upgrade (a WebSocket): the span lasts until the relay ends.
        upgrade = ctx.upgrade
        if upgrade:
            attributes["agw.upgrade"] = upgrade.decode("latin-1")
        attributes["bytes.received"] = ctx.request_bytes
        attributes["bytes.sent"] = ctx.response_bytes
    if ctx.mcp_method:
        mcp_attributes(attributes, ctx.mcp_method, ctx.mcp_resource, ctx.mcp_target)
    if ctx.mcp_session:
        attributes["mcp.session.id"] = hashed_session(ctx.mcp_session)
    llm = ctx.llm
    if llm is not None:
        # Usage, finish reasons and content live on the provider call's span (GenAI
        # conventions); repeating them here would count the tokens twice in GenAI views.
        llm.span_fields(attributes, ctx.status)
    a2a = ctx.a2a
    if a2a is not None:
        a2a.span_fields(attributes, ctx.status)
    return attributes


def connection_attributes(ctx: RequestCtx) -> dict[str, object]:
    """A relayed TCP or TLS connection's span attributes: the network conventions, the server
    name a TLS client sent, the bytes each way (from the client's side), why it was refused."""
    attributes: dict[str, object] = {
        "network.transport": "tcp",
        "client.address": ctx.client_ip,
        "network.peer.address": ctx.peer_ip,
        "network.peer.port": ctx.client_port,
        "gateway": ctx.gateway,
        "listener": ctx.listener,
        "route": ctx.route,
        "bytes.received": ctx.request_bytes,
        "bytes.sent": ctx.response_bytes,
    }
    if ctx.scheme == b"tls":
        attributes["network.protocol.name"] = "tls"
        if ctx.host:
            attributes["tls.client.server_name"] = ctx.host.decode("latin-1")
    if ctx.backend:
        attributes["endpoint"] = ctx.backend
    if ctx.reason:
        attributes["reason"] = ctx.reason
    if ctx.error:
        attributes["error"] = ctx.error
    return attributes


def mcp_attributes(into: dict[str, object], method: str, name: str, target: str) -> None:
    into["mcp.method.name"] = method
    if target:
        into["mcp.target"] = target
    if name:
        if method == "tools/call":
            into["gen_ai.tool.name"] = name
            into["gen_ai.operation.name"] = "execute_tool"
        elif method == "prompts/get":
            into["gen_ai.prompt.name"] = name
        elif method.startswith("resources/"):
            into["mcp.resource.uri"] = name
        else:
            into["mcp.resource.name"] = name


# ---------------------------------------------------------------------- hooks for calls


def start_call(ctx: RequestCtx, name: str, attributes: dict[str, object], kind: int = CLIENT) -> Span | None:
    """A span for a call the gateway makes for this request; None when it is not traced (the
    caller then does nothing more)."""
    trace = ctx.trace
    if trace is None or not trace.sampled:
        return None
    return trace.child(name, kind, attributes)


def start_upstream(ctx: RequestCtx, host: str, port: int, backend: str) -> Span | None:
    """The span of a proxied request's call to its backend; the request's ``traceparent`` is
    set to it, so the backend's spans are its children."""
    trace = ctx.trace
    if trace is None or not trace.sampled:
        return None
    span = trace.child(
        ctx.method.decode("latin-1"),
        CLIENT,
        {
            "http.request.method": ctx.method.decode("latin-1"),
            "server.address": host,
            "server.port": port,
            "url.path": _client_text(ctx.path),
            "endpoint": backend,
        },
    )
    _set_header(ctx, trace.traceparent(span))
    return span


def end_call(span: Span, status: int, error: str = "") -> None:
    """A call's span ends: its HTTP status (0: none came) and why it failed."""
    if status:
        span.attributes["http.response.status_code"] = status
        if status >= 500 and not error:
            error = str(status)
    span.end(error)


def start_provider_call(ctx: RequestCtx, facts: RequestFacts, provider: str, model: str) -> Span | None:
    """The span of a call to an LLM provider (GenAI conventions: ``{operation} {model}``,
    kind CLIENT); its attributes are completed when the call ends."""
    trace = ctx.trace
    if trace is None or not trace.sampled:
        return None
    attributes: dict[str, object] = {}
    facts.log_fields(attributes, 0)
    attributes["gen_ai.request.model"] = model
    attributes["agw.ai.provider"] = provider
    operation = attributes.get("gen_ai.operation.name", "chat")
    span = trace.child(f"{operation} {model}", CLIENT, attributes)
    span.on_end = lambda: end_provider_call(span, facts, 0, "")
    return span


def end_provider_call(span: Span, facts: RequestFacts, status: int, error: str) -> None:
    """The provider answered (or failed): models, usage, time to first token, finish reasons."""
    if span.end_ns:
        return
    requested = span.attributes.get("gen_ai.request.model")
    facts.log_fields(span.attributes, status)
    if requested is not None:
        span.attributes["gen_ai.request.model"] = requested
    if status:
        span.attributes["http.response.status_code"] = status
    if error:
        span.attributes["error.type"] = error
    span.end(error)


def traceparent_for(ctx: RequestCtx, span: Span | None) -> bytes | None:
    """The ``traceparent`` header value for a call: the call's span, or the request's context."""
    trace = ctx.trace
    if trace is None:
        return None
    return trace.traceparent(span)


def start_mcp_call(method: str, name: str, target: str, request_id: int) -> tuple[Span | None, str | None]:
    """A span for a request to an MCP target, under the MCP request this task serves, and the
    ``traceparent`` to put in the request's ``params._meta`` (None when tracing is off)."""
    trace = CURRENT_TRACE.get()
    if trace is None:
        return None, None
    if not trace.sampled:
        return None, trace.traceparent().decode()
    attributes: dict[str, object] = {"jsonrpc.request.id": str(request_id)}
    mcp_attributes(attributes, method, name, target)
    span = trace.child(f"{method} {name}" if name else method, CLIENT, attributes)
    return span, trace.traceparent(span).decode()


def internal_span(ctx: RequestCtx, name: str, attributes: dict[str, object]) -> Span | None:
    return start_call(ctx, name, attributes, INTERNAL)


def adopt_meta_traceparent(ctx: RequestCtx, meta_traceparent: object) -> None:
    """An MCP request's ``params._meta.traceparent`` (the MCP convention: one HTTP stream may
    carry many messages), used when the HTTP request brought no valid ``traceparent`` of its own:
    the header wins when both are there."""
    trace = ctx.trace
    if trace is None or trace.sampled_by_client or not isinstance(meta_traceparent, str):
        return
    parsed = parse_traceparent(meta_traceparent.encode("latin-1", "replace"))
    if parsed is None:
        return
    trace_id, parent_id, flags = parsed
    trace.trace_id = trace_id
    trace.parent_id = parent_id
    trace.sampled_by_client = True
    # The client's decision stands, as for a header (clientSampling was not consulted for an
    # unsampled flag; a sampled one keeps what randomSampling did not rule out).
    if not flags & 1:
        trace.sampled = False
        for span in trace.spans:
            span.on_end = None
        trace.spans.clear()
    else:
        trace.sampled = True
    _set_header(ctx, trace.traceparent())


def request_variables(ctx: RequestCtx) -> dict[str, object]:
    """The CEL variables of a finished request, for log fields, trace attributes, filters and
    metric labels: what policies learned (``jwt``, ``apiKey``, ...), ``response``, and the
    ``mcp`` and ``llm`` facts (agentgateway's names)."""
    variables: dict[str, object] = dict(ctx.cel_vars) if ctx.cel_vars else {}
    variables["response"] = {"code": ctx.status}
    if ctx.backend:
        variables.setdefault("backend", {"name": ctx.backend})
    if ctx.mcp_method and "mcp" not in variables:
        mcp: dict[str, object] = {"methodName": ctx.mcp_method}
        if ctx.mcp_session:
            mcp["sessionId"] = ctx.mcp_session
        if ctx.mcp_resource:
            kind = {"tools/call": "tool", "prompts/get": "prompt"}.get(ctx.mcp_method, "resource")
            mcp[kind] = {"name": ctx.mcp_resource, "target": ctx.mcp_target}
        variables["mcp"] = mcp
    llm = ctx.llm
    if llm is not None:
        # With the prompt and the completion (agentgateway's llm.prompt, llm.completion): content
        # reaches a log line or a span only when an expression asks for it.
        cel = getattr(llm, "final_cel", None)
        if cel is not None:
            variables["llm"] = cel()
    return variables
