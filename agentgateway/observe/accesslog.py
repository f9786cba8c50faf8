"""One line per request on stdout, as text (``key=value``) or JSON (``config.logging.format``).
Lines are buffered and written by the worker's ticker, never per request."""

from __future__ import annotations

import os
import time

import orjson

from agentgateway.core.context import RequestCtx


def _quote(value: str) -> str:
    if not value or any(c in value for c in ' "=\\\n'):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'
    return value


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


class AccessLog:
    __slots__ = ("json", "enabled", "fd", "_lines", "_size", "_ts")

    def __init__(self, fmt: str, enabled: bool, fd: int = 1) -> None:
        self.json = fmt == "json"
        self.enabled = enabled
        self.fd = fd
        self._lines: list[bytes] = []
        self._size = 0
        self._ts = Timestamps()

    def record(self, ctx: RequestCtx, duration: float) -> None:
        """Callers check ``enabled`` first (it saves a call per request when logs are off)."""
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
        ts = self._ts.format(time.time())  # the line is written when the request ends
        if self.json:
            line = orjson.dumps({"time": ts, "level": "info", "scope": "request", **fields}) + b"\n"
        else:
            text = " ".join(f"{k}={_quote(v) if isinstance(v, str) else v}" for k, v in fields.items() if v != "")
            line = f"{ts}\tinfo\trequest\t{text}\n".encode()
        self._lines.append(line)
        self._size += len(line)
        if self._size > 64 * 1024:
            self.flush()

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
        if ctx.reason:
            fields["reason"] = ctx.reason
        if ctx.error:
            fields["error"] = ctx.error
        self._write(fields, "connection")

    def _write(self, fields: dict[str, object], scope: str) -> None:
        ts = self._ts.format(time.time())
        if self.json:
            line = orjson.dumps({"time": ts, "level": "info", "scope": scope, **fields}) + b"\n"
        else:
            text = " ".join(f"{k}={_quote(v) if isinstance(v, str) else v}" for k, v in fields.items() if v != "")
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
