"""OTLP export of spans and log records, off the request path.

The request path appends a finished record to a bounded queue (``offer``: a length check and a
deque append). A daemon thread per exporter takes batches, encodes them as OTLP protobuf
messages (spans by the native extension, ``agentgateway._native.encode_span``) and sends them
over gRPC (``grpcio``) or HTTP/protobuf, a full batch at a time (or what is left when the
interval passes). When the collector is slow or down, the queue fills and new records are
dropped and counted; a batch the collector refuses or never answers is dropped and counted too:
nothing waits on the collector but this thread.

Why not the OpenTelemetry SDK: its per-span cost on the request path (span objects, attribute
validation, the span processor) measured several times what recording a finished span as a
plain object costs; the gateway decides sampling itself and records spans whole, which is
what OTLP carries.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import struct
import sys
import threading
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from agentgateway import __version__
from agentgateway._native import encode_span
from agentgateway.core.trace import Span

if TYPE_CHECKING:  # grpcio is imported when a gRPC exporter first sends (startup time)
    import grpc

log = logging.getLogger("agentgateway.otlp")

QUEUE_LIMIT = 8192  # records waiting for export per exporter; more are dropped
BATCH = 512
# Bytes of records in one export request: a collector refuses a larger request whole (4 MiB is
# the gRPC receive limit of the OpenTelemetry Collector and of gRPC servers by default), and with
# it every span of the batch; clients decide what their spans carry (a 64 KiB head).
EXPORT_BYTES = 3 * 1024 * 1024
INTERVAL = 1.0  # seconds between exports when the queue does not fill a batch
EXPORT_TIMEOUT = 10.0


def hashed_session(sid: str) -> str:
    """An MCP session id as spans and OTLP logs carry it: a digest, never the token itself (it
    lets its holder use the session)."""
    return hashlib.sha256(sid.encode()).hexdigest()[:32]


# A finished span as queued for export: its trace id, the span, the client's tracestate. A
# tuple: made once per span on the event loop, read once by the exporter thread.
SpanRecord = tuple[int, Span, bytes | None]


class LogRecord:
    """An access-log line as an OTLP log record."""

    __slots__ = ("time_ns", "body", "attributes", "trace_id", "span_id")

    def __init__(self, time_ns: int, body: str, attributes: dict[str, object], trace_id: int, span_id: int) -> None:
        self.time_ns = time_ns
        self.body = body
        self.attributes = attributes
        self.trace_id = trace_id
        self.span_id = span_id


# ---------------------------------------------------------------------- protobuf encoding
#
# OTLP messages are written directly in the protobuf wire format: measured here, building them
# as ``opentelemetry-proto`` message objects and serializing cost four times as much per span,
# on the gateway's CPU. Spans, the bulk of it, are written by the native extension
# (``encode_span``: 2 µs for a server span, ~6 µs in Python); log records, the resource and the
# request framing here. Field numbers are those of
# opentelemetry/proto/{common,resource,trace,logs,collector}/v1; the test receiver decodes what
# is sent with the real message classes.

_fixed64 = struct.Struct("<Q").pack
_double = struct.Struct("<d").pack
# Varints below 16384 (lengths, mostly), made once: one or two bytes.
_SHORT = [bytes([n]) if n < 128 else bytes([(n & 0x7F) | 0x80, n >> 7]) for n in range(16384)]


def _varint(n: int) -> bytes:
    if n < 16384:
        return _SHORT[n]
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field(tag: bytes, payload: bytes) -> bytes:
    """A length-delimited field: its tag, the length, the payload."""
    return tag + _varint(len(payload)) + payload


_KEYS: dict[str, bytes] = {}  # the KeyValue.key field of attribute names, made once each


def _any_value(value: object) -> bytes:
    """An AnyValue message: string 1, bool 2, int 3, double 4, array 5, kvlist 6."""
    cls = value.__class__
    if cls is str:
        return _field(b"\x0a", value.encode("utf-8", "replace"))  # type: ignore[attr-defined]
    if cls is bool:
        return b"\x10\x01" if value else b"\x10\x00"
    if cls is int:
        if -(2**63) <= value < 2**63:  # type: ignore[operator]
            return b"\x18" + _varint(value & 0xFFFFFFFFFFFFFFFF)  # type: ignore[operator]
        return _field(b"\x0a", str(value).encode())
    if cls is float:
        return b"\x21" + _double(value)
    if isinstance(value, bytes):
        return _field(b"\x0a", value.decode("utf-8", "replace").encode())
    if isinstance(value, list | tuple):
        return _field(b"\x2a", b"".join(_field(b"\x0a", _any_value(v)) for v in value))
    if isinstance(value, dict):
        return _field(b"\x32", b"".join(_field(b"\x0a", _key_value(str(k), v)) for k, v in value.items()))
    return _field(b"\x0a", str(value).encode("utf-8", "replace"))


def _key_value(key: str, value: object) -> bytes:
    """A KeyValue message: key 1, value 2."""
    encoded = _KEYS.get(key)
    if encoded is None:
        encoded = _field(b"\x0a", key.encode("utf-8", "replace"))
        if len(_KEYS) < 4096:  # attribute names from expressions are few; bound it anyway
            _KEYS[key] = encoded
    return encoded + _field(b"\x12", _any_value(value))


# Whole attribute fields (tag, KeyValue) by (tag, key, value), for the values that repeat from
# request to request (route, listener, method, status, peer, scheme, models): one lookup each.
_ATTRIBUTES: dict[tuple[bytes, str, object], bytes] = {}
_ATTRIBUTES_LIMIT = 8192


def _attributes(tag: bytes, attributes: dict[str, object]) -> bytes:
    out = []
    cache = _ATTRIBUTES
    for key, value in attributes.items():
        if value is None:
            continue
        cls = value.__class__
        cacheable = (cls is str and len(value) <= 64) or cls is int  # type: ignore[arg-type]
        if cacheable:
            encoded = cache.get((tag, key, value))
            if encoded is not None:
                out.append(encoded)
                continue
        encoded = _field(tag, _key_value(key, value))
        if cacheable and len(cache) < _ATTRIBUTES_LIMIT:
            cache[(tag, key, value)] = encoded
        out.append(encoded)
    return b"".join(out)


def resource(attributes: dict[str, object]) -> bytes:
    """A Resource message (attributes 1)."""
    return _attributes(b"\x0a", attributes)


_SCOPE = _field(b"\x0a", b"agentgateway") + _field(b"\x12", __version__.encode())  # InstrumentationScope


def encode_spans(spans: Sequence[bytes], res: bytes) -> bytes:
    """An ExportTraceServiceRequest of spans ``encode_span`` wrote: one ResourceSpans, one
    ScopeSpans."""
    scope_spans = _field(b"\x0a", _SCOPE) + b"".join(spans)
    return _field(b"\x0a", _field(b"\x0a", res) + _field(b"\x12", scope_spans))


def _log(record: LogRecord) -> bytes:
    """ScopeLogs.log_records (2): a LogRecord."""
    parts = [
        b"\x09",
        _fixed64(record.time_ns),
        b"\x10\x09",  # severity_number: INFO
        b"\x1a\x04info",
        _field(b"\x2a", _any_value(record.body)),
        _attributes(b"\x32", record.attributes),
    ]
    if record.trace_id:
        parts += (b"\x4a\x10", record.trace_id.to_bytes(16, "big"))
    if record.span_id:
        parts += (b"\x52\x08", record.span_id.to_bytes(8, "big"))
    parts += (b"\x59", _fixed64(record.time_ns), b"\x62\x07request")  # observed time, event name
    return _field(b"\x12", b"".join(parts))


def encode_logs(records: Sequence[LogRecord], res: bytes) -> bytes:
    """An ExportLogsServiceRequest: one ResourceLogs, one ScopeLogs."""
    return _logs_request([_log(r) for r in records], res)


def _logs_request(logs: list[bytes], res: bytes) -> bytes:
    scope_logs = _field(b"\x0a", _SCOPE) + b"".join(logs)
    return _field(b"\x0a", _field(b"\x0a", res) + _field(b"\x12", scope_logs))


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

    def send(self, request: bytes) -> None:
        if self.target.protocol == "grpc":
            if self._stub is None:
                import grpc

                address = f"{self.host}:{self.port}"
                if self.tls:
                    self._channel = grpc.secure_channel(address, grpc.ssl_channel_credentials())
                else:
                    self._channel = grpc.insecure_channel(address)
                # The request is already serialized: sent as it is (no request serializer); the
                # answer (an Export*ServiceResponse) is not needed, only the status.
                service = "trace.v1.TraceService" if self.signal == "traces" else "logs.v1.LogsService"
                self._stub = self._channel.unary_unary(
                    f"/opentelemetry.proto.collector.{service}/Export",
                    request_serializer=None,
                    response_deserializer=None,
                )
            metadata = tuple((k.lower(), v) for k, v in self.target.headers)
            self._stub(request, timeout=EXPORT_TIMEOUT, metadata=metadata)
            return
        body = request
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
        queue = self.queue
        while True:
            timed_out = not self._wake.wait(INTERVAL)
            self._wake.clear()
            # Full batches while there are; what is left waits for a full batch or the interval.
            # Draining to empty would chase the requests that keep arriving with exports of a
            # few spans each, and trade the GIL with the event loop for each of them.
            while len(queue) >= BATCH:
                self._export_batch()
            if queue and (timed_out or self._stop):
                while queue:
                    self._export_batch()
            if self._stop:
                self._sender.close()  # only this thread uses the sender
                return

    def _export_batch(self) -> None:
        """One export request: up to ``BATCH`` records and ``EXPORT_BYTES`` bytes of them (the
        record that would pass the budget waits for the next one; a record over it alone is
        dropped, so one client's huge span never takes other spans down with it)."""
        queue = self.queue
        traces = self.signal == "traces"
        encoded: list[bytes] = []
        size = 0
        try:
            while queue and len(encoded) < BATCH:
                record = queue.popleft()
                one = encode_span(*record) if traces else _log(record)
                if len(one) > EXPORT_BYTES:
                    self.dropped_failed += 1
                    continue
                if size + len(one) > EXPORT_BYTES:
                    queue.appendleft(record)
                    break
                encoded.append(one)
                size += len(one)
            if not encoded:
                return
            request = encode_spans(encoded, self.resource) if traces else _logs_request(encoded, self.resource)
            self._sender.send(request)
        except Exception as exc:  # the collector's problem (or ours) must never reach requests
            self.dropped_failed += len(encoded)
            if not self._warned:
                self._warned = True
                log.warning("OTLP %s export to %s failed: %s", self.signal, self.target.endpoint, _short(exc))
            return
        self._warned = False
        self.exported += len(encoded)

    def close(self, timeout: float = 2.0) -> None:
        """Stop: what is queued is exported first; waits for that at most ``timeout`` seconds
        (0: not at all, the thread finishes on its own)."""
        self._stop = True
        self._wake.set()
        if timeout > 0:
            self._thread.join(timeout)


def _short(exc: BaseException) -> str:
    grpc = sys.modules.get("grpc")  # an RpcError exists only once a gRPC exporter imported grpc
    if grpc is not None and isinstance(exc, grpc.RpcError):
        code = exc.code() if hasattr(exc, "code") else None
        return f"gRPC {code.name if code else 'error'}"
    return str(exc) or type(exc).__name__
