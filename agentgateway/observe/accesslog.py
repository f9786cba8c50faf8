"""One line per request on stdout, as text (``key=value``) or JSON (``config.logging.format``).
Lines are buffered and written by the worker's ticker, never per request.

``frontendPolicies.accessLog`` (and the older ``config.logging.filter``/``fields``) shape them:
``filter`` (CEL: the requests logged; a failed evaluation does not log), ``remove`` (field names
left out) and ``add`` (name: CEL expression, evaluated when the request ends; null or a failed
evaluation adds nothing). ``accessLog.otlp`` sends each line as an OTLP log record too, with the
trace and span ids of the request."""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

import orjson

from agentgateway.core.context import RequestCtx
from agentgateway.observe.otlp import LogRecord, OtlpExporter, OtlpTarget, hashed_session

# ``isinstance`` with a tuple: ``a | b`` would build a union object on every call.
_NUMBER = (int, float)

if TYPE_CHECKING:
    from agentgateway.observe.tracing import Evaluate


class LogShape:
    """What a line holds: which requests (``filter``), fields left out and added."""

    __slots__ = ("filter", "add", "remove")

    def __init__(
        self,
        filter: Evaluate | None = None,  # noqa: A002 - agentgateway's key
        add: tuple[tuple[str, Evaluate], ...] = (),
        remove: frozenset[str] = frozenset(),
    ) -> None:
        self.filter = filter
        self.add = add
        self.remove = remove

    @property
    def uses_cel(self) -> bool:
        return self.filter is not None or bool(self.add)


class OtlpLogSettings:
    """``accessLog.otlp`` compiled: where the records go and their own shape (None: the
    access log's)."""

    __slots__ = ("target", "resource", "shape")

    def __init__(self, target: OtlpTarget, resource: dict[str, object], shape: LogShape | None) -> None:
        self.target = target
        self.resource = resource
        self.shape = shape


class AccessLogSettings:
    """``frontendPolicies.accessLog`` with ``config.logging.filter``/``fields``, compiled."""

    __slots__ = ("shape", "otlp")

    def __init__(self, shape: LogShape | None, otlp: OtlpLogSettings | None) -> None:
        self.shape = shape
        self.otlp = otlp


class OtlpLogs:
    """``accessLog.otlp``: the exporter, and its own filter and fields (the stdout ones when
    not given)."""

    __slots__ = ("exporter", "shape")

    def __init__(self, exporter: OtlpExporter, shape: LogShape | None) -> None:
        self.exporter = exporter
        self.shape = shape


# A text value is quoted when empty or when it holds one of these (one regex scan, not five).
# Control characters too: a value may quote what a client or upstream sent (a provider's error
# as ``reason``), and a CR or tab there must not pass raw into the line.
_NEEDS_QUOTES = re.compile(r'[ "=\\\x00-\x1f\x7f]')
_QUOTED = {ord("\\"): "\\\\", ord('"'): '\\"', 0x0A: "\\n", 0x0D: "\\r", 0x09: "\\t"} | {
    c: f"\\x{c:02x}" for c in (*range(0x20), 0x7F) if c not in (0x0A, 0x0D, 0x09)
}


def _quote(value: str) -> str:
    if not value or _NEEDS_QUOTES.search(value) is not None:
        return '"' + value.translate(_QUOTED) + '"'
    return value


def _text(value: object) -> str:
    if isinstance(value, str):
        return _quote(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _NUMBER):
        return str(value)
    return _quote(orjson.dumps(value, default=str).decode())


class Timestamps:
    """RFC 3339 UTC timestamps with milliseconds; the seconds part is formatted once a second."""

    __slots__ = ("_second", "_prefix")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def format(self, wall: float) -> str:
        second = int(wall)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{int((wall - second) * 1000):03d}Z"


def shape_fields(shape: LogShape, fields: dict[str, object], ctx: RequestCtx, extra: dict[str, object] | None) -> None:
    for key in shape.remove:
        fields.pop(key, None)
    for key, evaluate in shape.add:
        value = evaluate(ctx, extra)
        if value is not None:
            fields[key] = value


def keeps(shape: LogShape | None, ctx: RequestCtx, extra: dict[str, object] | None) -> bool:
    return shape is None or shape.filter is None or shape.filter(ctx, extra) is True


class AccessLog:
    __slots__ = ("json", "enabled", "fd", "shape", "otlp", "_lines", "_size", "_ts")

    def __init__(self, fmt: str, enabled: bool, fd: int = 1) -> None:
        self.json = fmt == "json"
        self.enabled = enabled
        self.fd = fd
        self.shape: LogShape | None = None
        self.otlp: OtlpLogs | None = None
        self._lines: list[bytes] = []
        self._size = 0
        self._ts = Timestamps()

    @property
    def needs_cel(self) -> bool:
        """Whether records need the CEL variables of the request (``extra``)."""
        shape = self.shape
        otlp = self.otlp
        return (shape is not None and shape.uses_cel) or (
            otlp is not None and otlp.shape is not None and otlp.shape.uses_cel
        )

    def record(self, ctx: RequestCtx, duration: float, extra: dict[str, object] | None = None) -> None:
        """Callers check ``enabled`` (or ``otlp``) first (it saves a call per request when logs
        are off); ``extra`` holds the CEL variables when ``needs_cel``."""
        shape = self.shape
        to_stdout = self.enabled and keeps(shape, ctx, extra)
        otlp = self.otlp
        to_otlp = otlp is not None and keeps(otlp.shape if otlp.shape is not None else shape, ctx, extra)
        if not to_stdout and not to_otlp:
            return
        fields = self.fields(ctx, duration)
        if to_stdout:
            line_fields = fields
            if shape is not None:
                if to_otlp:
                    line_fields = dict(fields)
                shape_fields(shape, line_fields, ctx, extra)
            self._write(line_fields, "request")
        if to_otlp:
            assert otlp is not None
            own = otlp.shape if otlp.shape is not None else shape
            if own is not None:
                shape_fields(own, fields, ctx, extra)
            if ctx.mcp_session and "mcp.session.id" in fields:
                fields["mcp.session.id"] = hashed_session(ctx.mcp_session)
            trace = ctx.trace
            body = " ".join(f"{k}={_text(v)}" for k, v in fields.items() if v != "")
            otlp.exporter.offer(
                LogRecord(
                    time.time_ns(),
                    body,
                    fields,
                    trace.trace_id if trace is not None else 0,
                    trace.span_id if trace is not None and trace.sampled else 0,
                )
            )

    def fields(self, ctx: RequestCtx, duration: float) -> dict[str, object]:
        """The default fields of a request's line (agentgateway's names)."""
        fields: dict[str, object] = {
            "gateway": ctx.gateway,
            "listener": ctx.listener,
            "route": ctx.route,
            "endpoint": ctx.backend,
            "src.addr": f"{ctx.client_ip}:{ctx.client_port}",
            "http.method": ctx.method.decode("latin-1"),
            "http.host": ctx.host.decode("latin-1"),
            "http.path": ctx.target.decode("latin-1"),
            "http.version": f"HTTP/{ctx.version}",
            "http.status": ctx.status,
            "duration": f"{duration * 1000:.3f}ms",
        }
        if ctx.mcp_method:
            fields["mcp.method.name"] = ctx.mcp_method
            if ctx.mcp_target:
                fields["mcp.target"] = ctx.mcp_target
            if ctx.mcp_resource:
                key = "gen_ai.tool.name" if ctx.mcp_method == "tools/call" else "mcp.resource.name"
                fields[key] = ctx.mcp_resource
        if ctx.mcp_session:
            fields["mcp.session.id"] = ctx.mcp_session
        trace = ctx.trace
        if trace is not None:
            fields["trace.id"] = f"{trace.trace_id:032x}"
            if trace.sampled:
                fields["span.id"] = f"{trace.span_id:016x}"
        llm = ctx.llm
        if llm is not None:
            llm.log_fields(fields, ctx.status)
        a2a = ctx.a2a
        if a2a is not None:
            a2a.log_fields(fields, ctx.status)
        if ctx.status == 101:
            # A connection that switched protocols (a WebSocket): the bytes relayed each way.
            fields["bytes.received"] = ctx.request_bytes
            fields["bytes.sent"] = ctx.response_bytes
        if ctx.reason:
            fields["reason"] = ctx.reason
        if ctx.error:
            fields["error"] = ctx.error
        return fields

    def record_connection(self, ctx: RequestCtx, duration: float) -> None:
        """The line of a relayed TCP or TLS connection: where it went, the server name a TLS
        client sent, the bytes each way (from the client's side), and why it ended early."""
        fields: dict[str, object] = {
            "gateway": ctx.gateway,
            "listener": ctx.listener,
            "route": ctx.route,
            "endpoint": ctx.backend,
            "src.addr": f"{ctx.client_ip}:{ctx.client_port}",
            "protocol": ctx.scheme.decode("latin-1"),
            "tls.sni": ctx.host.decode("latin-1"),
            "bytes.received": ctx.request_bytes,
            "bytes.sent": ctx.response_bytes,
            "duration": f"{duration * 1000:.3f}ms",
        }
        trace = ctx.trace
        if trace is not None:  # a traced connection (tracing sampled it)
            fields["trace.id"] = f"{trace.trace_id:032x}"
            fields["span.id"] = f"{trace.span_id:016x}"
        if ctx.reason:
            fields["reason"] = ctx.reason
        if ctx.error:
            fields["error"] = ctx.error
        if self.enabled:
            self._write(fields, "connection")
        otlp = self.otlp
        if otlp is not None:
            # The same line as an OTLP log record (the request filter and fields are about HTTP
            # requests and do not apply to connections, as on stdout).
            body = " ".join(f"{k}={_text(v)}" for k, v in fields.items() if v != "")
            otlp.exporter.offer(
                LogRecord(
                    time.time_ns(),
                    body,
                    fields,
                    trace.trace_id if trace is not None else 0,
                    trace.span_id if trace is not None else 0,
                )
            )

    def _write(self, fields: dict[str, object], scope: str) -> None:
        ts = self._ts.format(time.time())  # the line is written when the request ends
        if self.json:
            line = orjson.dumps({"time": ts, "level": "info", "scope": scope, **fields}) + b"\n"
        else:
            search = _NEEDS_QUOTES.search
            # Most values are plain strings: quoted here without a call per field when not needed.
            text = " ".join(
                [
                    f"{k}={v}" if v.__class__ is str and search(v) is None else f"{k}={_text(v)}"
                    for k, v in fields.items()
                    if v != ""
                ]
            )
            line = f"{ts}\tinfo\t{scope}\t{text}\n".encode()
        self._lines.append(line)
        self._size += len(line)
        if self._size > 64 * 1024:
            self.flush()

    def flush(self) -> None:
        if not self._lines:
            return
        data = b"".join(self._lines)
        self._lines.clear()
        self._size = 0
        view = memoryview(data)
        while view:
            try:
                n = os.write(self.fd, view)
            except BlockingIOError:
                continue
            except OSError:
                return  # stdout is gone; logging must never take the data plane down
            view = view[n:]
