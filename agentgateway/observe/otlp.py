"""OTLP export of spans and log records, off the request path.

The request path only appends a finished record to a bounded queue (``offer``: a length check
and a deque append). A daemon thread per exporter takes batches, encodes them as OTLP protobuf
messages (``opentelemetry-proto``) and sends them over gRPC (``grpcio``) or HTTP/protobuf. When
the collector is slow or down, the queue fills and new records are dropped and counted; a batch
the collector refuses or never answers is dropped and counted too: nothing waits on the
collector but this thread.

Why not the OpenTelemetry SDK: its per-span cost on the request path (span objects, attribute
validation, the span processor) measured several times what recording a finished span as a
plain object costs; the gateway decides sampling itself and records spans whole, which is
what OTLP carries.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import threading
from collections import deque
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.logs.v1 import logs_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from agentgateway import __version__
from agentgateway.core.trace import Span

log = logging.getLogger("agentgateway.otlp")

QUEUE_LIMIT = 8192  # records waiting for export per exporter; more are dropped
BATCH = 512
INTERVAL = 1.0  # seconds between exports when the queue does not fill a batch
EXPORT_TIMEOUT = 10.0

_SCOPE = common_pb2.InstrumentationScope(name="agentgateway", version=__version__)


def any_value(value: object) -> common_pb2.AnyValue:
    if isinstance(value, str):
        return common_pb2.AnyValue(string_value=value)
    if isinstance(value, bool):
        return common_pb2.AnyValue(bool_value=value)
    if isinstance(value, int):
        if -(2**63) <= value < 2**63:
            return common_pb2.AnyValue(int_value=value)
        return common_pb2.AnyValue(string_value=str(value))
    if isinstance(value, float):
        return common_pb2.AnyValue(double_value=value)
    if isinstance(value, bytes):
        return common_pb2.AnyValue(string_value=value.decode("utf-8", "replace"))
    if isinstance(value, list | tuple):
        return common_pb2.AnyValue(array_value=common_pb2.ArrayValue(values=[any_value(v) for v in value]))
    if isinstance(value, dict):
        return common_pb2.AnyValue(kvlist_value=common_pb2.KeyValueList(values=key_values(value)))
    if value is None:
        return common_pb2.AnyValue()
    return common_pb2.AnyValue(string_value=str(value))


def key_values(attributes: dict[str, object]) -> list[common_pb2.KeyValue]:
    return [common_pb2.KeyValue(key=k, value=any_value(v)) for k, v in attributes.items() if v is not None]


def resource(attributes: dict[str, object]) -> resource_pb2.Resource:
    return resource_pb2.Resource(attributes=key_values(attributes))


def hashed_session(sid: str) -> str:
    """An MCP session id as spans and OTLP logs carry it: a digest, never the token itself (it
    lets its holder use the session)."""
    return hashlib.sha256(sid.encode()).hexdigest()[:32]


class SpanRecord:
    """A finished span with the trace it belongs to, as queued for export."""

    __slots__ = ("trace_id", "span", "state")

    def __init__(self, trace_id: int, span: Span, state: bytes | None) -> None:
        self.trace_id = trace_id
        self.span = span
        self.state = state


class LogRecord:
    """An access-log line as an OTLP log record."""

    __slots__ = ("time_ns", "body", "attributes", "trace_id", "span_id")

    def __init__(self, time_ns: int, body: str, attributes: dict[str, object], trace_id: int, span_id: int) -> None:
        self.time_ns = time_ns
        self.body = body
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id


def encode_spans(
    records: Sequence[SpanRecord], res: resource_pb2.Resource
) -> trace_service_pb2.ExportTraceServiceRequest:
    spans = []
    for record in records:
        span = record.span
        spans.append(
            trace_pb2.Span(
                trace_id=record.trace_id.to_bytes(16, "big"),
                span_id=span.span_id.to_bytes(8, "big"),
                parent_span_id=span.parent_id.to_bytes(8, "big") if span.parent_id else b"",
                trace_state=record.state.decode("latin-1") if record.state else "",
                name=span.name,
                kind=span.kind,  # type: ignore[arg-type]
                start_time_unix_nano=span.start_ns,
                end_time_unix_nano=span.end_ns or span.start_ns,
                attributes=key_values(span.attributes),
                status=trace_pb2.Status(code=span.status, message=span.message),  # type: ignore[arg-type]
                flags=0x100 | (0x200 if span.parent_id and span.kind == 2 else 0) | 1,
            )
        )
    scope = trace_pb2.ScopeSpans(scope=_SCOPE, spans=spans)
    return trace_service_pb2.ExportTraceServiceRequest(
        resource_spans=[trace_pb2.ResourceSpans(resource=res, scope_spans=[scope])]
    )


def encode_logs(records: Sequence[LogRecord], res: resource_pb2.Resource) -> logs_service_pb2.ExportLogsServiceRequest:
    out = [
        logs_pb2.LogRecord(
            time_unix_nano=r.time_ns,
            observed_time_unix_nano=r.time_ns,
            severity_number=logs_pb2.SEVERITY_NUMBER_INFO,
            severity_text="info",
            body=common_pb2.AnyValue(string_value=r.body),
            attributes=key_values(r.attributes),
            trace_id=r.trace_id.to_bytes(16, "big") if r.trace_id else b"",
            span_id=r.span_id.to_bytes(8, "big") if r.span_id else b"",
            event_name="request",
        )
        for r in records
    ]
    scope = logs_pb2.ScopeLogs(scope=_SCOPE, log_records=out)
    return logs_service_pb2.ExportLogsServiceRequest(
        resource_logs=[logs_pb2.ResourceLogs(resource=res, scope_logs=[scope])]
    )


class OtlpTarget:
    """Where one signal is sent: ``endpoint`` (``http(s)://host:port``), ``protocol`` (grpc or
    http), the HTTP ``path`` and the headers (gRPC metadata) sent with each export."""

    __slots__ = ("endpoint", "protocol", "path", "headers")

    def __init__(self, endpoint: str, protocol: str, path: str, headers: tuple[tuple[str, str], ...]) -> None:
        self.endpoint = endpoint
        self.protocol = protocol
        self.path = path
        self.headers = headers

    def key(self) -> tuple[object, ...]:
        return (self.endpoint, self.protocol, self.path, self.headers)


class _Sender:
    """One export call per batch, blocking, in the exporter's thread."""

    def __init__(self, target: OtlpTarget, signal: str) -> None:
        url = urlsplit(target.endpoint if "://" in target.endpoint else f"http://{target.endpoint}")
        self.tls = url.scheme == "https"
        self.host = url.hostname or "localhost"
        self.port = url.port or (443 if self.tls else (4317 if target.protocol == "grpc" else 4318))
        self.target = target
        self.signal = signal
        self._channel: grpc.Channel | None = None
        self._stub: Any = None
        self._http: http.client.HTTPConnection | None = None
        # An endpoint given with a path (``http://collector:4318/v1/traces``) keeps it for HTTP.
        self.path = target.path or (url.path if url.path not in ("", "/") else f"/v1/{signal}")

    def send(self, request: Any) -> None:
        if self.target.protocol == "grpc":
            if self._stub is None:
                address = f"{self.host}:{self.port}"
                if self.tls:
                    self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials())
                else:
                    self._channel = grpc.insecure_channel(address)
                module = trace_service_pb2_grpc if self.signal == "traces" else logs_service_pb2_grpc
                stub_class = module.TraceServiceStub if self.signal == "traces" else module.LogsServiceStub
                self._stub = stub_class(self._channel)
            metadata = tuple((k.lower(), v) for k, v in self.target.headers)
            self._stub.Export(request, timeout=EXPORT_TIMEOUT, metadata=metadata)
            return
        body = request.SerializeToString()
        headers = {"content-type": "application/x-protobuf", **dict(self.target.headers)}
        for attempt in (0, 1):  # a kept-alive connection the collector closed: one fresh try
            conn = self._http
            if conn is None:
                cls = http.client.HTTPSConnection if self.tls else http.client.HTTPConnection
                conn = self._http = cls(self.host, self.port, timeout=EXPORT_TIMEOUT)
            try:
                conn.request("POST", self.path, body, headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                conn.close()
                self._http = None
                if attempt:
                    raise
                continue
            if not 200 <= response.status < 300:
                raise OSError(f"collector answered {response.status}")
            return

    def close(self) -> None:
        if self._channel is not None:
            self._channel.close()
            self._channel = None
            self._stub = None
        if self._http is not None:
            self._http.close()
            self._http = None


class OtlpExporter:
    """A bounded queue of records and the thread that exports them."""

    def __init__(self, target: OtlpTarget, signal: str, resource_attributes: dict[str, object]) -> None:
        self.target = target
        self.signal = signal  # "traces" or "logs"
        self.resource = resource(resource_attributes)
        self.queue: deque[Any] = deque()
        self.dropped_full = 0  # counted on the loop thread
        self.dropped_failed = 0  # counted on the exporter thread
        self.exported = 0
        self._wake = threading.Event()
        self._stop = False
        self._sender = _Sender(target, signal)
        self._thread = threading.Thread(target=self._run, name=f"otlp-{signal}", daemon=True)
        self._thread.start()
        self._warned = False

    def offer(self, record: object) -> None:
        queue = self.queue
        if len(queue) >= QUEUE_LIMIT:
            self.dropped_full += 1
            return
        queue.append(record)
        if len(queue) == BATCH:
            self._wake.set()

    def offer_many(self, records: list[Any]) -> None:
        queue = self.queue
        room = QUEUE_LIMIT - len(queue)
        if room < len(records):
            self.dropped_full += len(records) - max(room, 0)
            records = records[: max(room, 0)]
        queue.extend(records)
        if len(queue) >= BATCH:
            self._wake.set()

    def _run(self) -> None:
        while True:
            self._wake.wait(INTERVAL)
            self._wake.clear()
            while self.queue:
                self._export_batch()
            if self._stop:
                return

    def _export_batch(self) -> None:
        queue = self.queue
        batch: list[Any] = []
        while queue and len(batch) < BATCH:
            batch.append(queue.popleft())
        try:
            if self.signal == "traces":
                request: Any = encode_spans(batch, self.resource)
            else:
                request = encode_logs(batch, self.resource)
            self._sender.send(request)
        except Exception as exc:  # the collector's problem (or ours) must never reach requests
            self.dropped_failed += len(batch)
            if not self._warned:
                self._warned = True
                log.warning("OTLP %s export to %s failed: %s", self.signal, self.target.endpoint, _short(exc))
            return
        self._warned = False
        self.exported += len(batch)

    def close(self, timeout: float = 2.0) -> None:
        """Export what is queued (bounded by ``timeout``) and stop the thread."""
        self._stop = True
        self._wake.set()
        self._thread.join(timeout)
        self._sender.close()


def _short(exc: BaseException) -> str:
    if isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        return f"gRPC {code.name if code else 'error'}"
    return str(exc) or type(exc).__name__
