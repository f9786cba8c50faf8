"""A real OTLP receiver for tests: the collector's gRPC services (``TraceService``, ``LogsService``
from ``opentelemetry-proto`` over grpcio) and its HTTP/protobuf endpoints (``/v1/traces``,
``/v1/logs``), on 127.0.0.1, in threads of the test process. What it receives is kept decoded."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent import futures
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import grpc
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2, logs_service_pb2_grpc
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2, trace_service_pb2_grpc
from opentelemetry.proto.common.v1 import common_pb2

from tests.support.gateway import free_port


def value_of(v: common_pb2.AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [value_of(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: value_of(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


class ReceivedSpan:
    """One span as the receiver decoded it, with its resource and how it arrived."""

    def __init__(self, span: Any, resource: dict[str, Any], scope: str, via: str, metadata: dict[str, str]) -> None:
        self.proto = span
        self.name: str = span.name
        self.kind: int = span.kind
        self.trace_id = span.trace_id.hex()
        self.span_id = span.span_id.hex()
        self.parent_id = span.parent_span_id.hex()
        self.attributes = {kv.key: value_of(kv.value) for kv in span.attributes}
        self.status = span.status.code
        self.status_message = span.status.message
        self.start = span.start_time_unix_nano
        self.end = span.end_time_unix_nano
        self.trace_state = span.trace_state
        self.resource = resource
        self.scope = scope
        self.via = via
        self.metadata = metadata

    def __repr__(self) -> str:
        return (
            f"<span {self.name!r} kind={self.kind} {self.trace_id}/{self.span_id}<-{self.parent_id} {self.attributes}>"
        )


class ReceivedLog:
    def __init__(self, record: Any, resource: dict[str, Any], via: str) -> None:
        self.body = value_of(record.body)
        self.attributes = {kv.key: value_of(kv.value) for kv in record.attributes}
        self.trace_id = record.trace_id.hex()
        self.span_id = record.span_id.hex()
        self.severity = record.severity_text
        self.resource = resource
        self.via = via


class OtlpReceiver:
    """Start with ``start()``; ``grpc_endpoint``/``http_endpoint`` are what the gateway is told."""

    def __init__(self, grpc_port: int | None = None, http_port: int | None = None) -> None:
        self.grpc_port = grpc_port or free_port()
        self.http_port = http_port or free_port()
        self.spans: list[ReceivedSpan] = []
        self.logs: list[ReceivedLog] = []
        self.exports = 0
        self._lock = threading.Lock()
        self._grpc: grpc.Server | None = None
        self._http: ThreadingHTTPServer | None = None
        self._http_thread: threading.Thread | None = None

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> OtlpReceiver:
        receiver = self

        class Traces(trace_service_pb2_grpc.TraceServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802 - gRPC name
                metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
                receiver._add_spans(request, "grpc", metadata)
                return trace_service_pb2.ExportTraceServiceResponse()

        class Logs(logs_service_pb2_grpc.LogsServiceServicer):
            def Export(self, request: Any, context: grpc.ServicerContext) -> Any:  # noqa: N802
                receiver._add_logs(request, "grpc")
                return logs_service_pb2.ExportLogsServiceResponse()

        server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        trace_service_pb2_grpc.add_TraceServiceServicer_to_server(Traces(), server)
        logs_service_pb2_grpc.add_LogsServiceServicer_to_server(Logs(), server)
        server.add_insecure_port(f"127.0.0.1:{self.grpc_port}")
        server.start()
        self._grpc = server

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-type") != "application/x-protobuf":
                    self.send_response(415)
                    self.end_headers()
                    return
                metadata = {k.lower(): v for k, v in self.headers.items()}
                if self.path == "/v1/traces":
                    receiver._add_spans(trace_service_pb2.ExportTraceServiceRequest.FromString(body), "http", metadata)
                    answer = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()
                elif self.path == "/v1/logs":
                    receiver._add_logs(logs_service_pb2.ExportLogsServiceRequest.FromString(body), "http")
                    answer = logs_service_pb2.ExportLogsServiceResponse().SerializeToString()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", self.http_port), Handler)
        self._http.daemon_threads = True
        self._http_thread = threading.Thread(target=self._http.serve_forever, daemon=True)
        self._http_thread.start()
        return self

    def stop(self) -> None:
        """Kills both endpoints at once (connections cut, nothing more accepted)."""
        if self._grpc is not None:
            self._grpc.stop(grace=None).wait(5)
            self._grpc = None
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None

    @property
    def grpc_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.grpc_port}"

    @property
    def http_endpoint(self) -> str:
        return f"http://127.0.0.1:{self.http_port}"

    # ------------------------------------------------------------------ received

    def _add_spans(self, request: Any, via: str, metadata: dict[str, str]) -> None:
        with self._lock:
            self.exports += 1
            for rs in request.resource_spans:
                resource = {kv.key: value_of(kv.value) for kv in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        self.spans.append(ReceivedSpan(span, resource, ss.scope.name, via, metadata))

    def _add_logs(self, request: Any, via: str) -> None:
        with self._lock:
            self.exports += 1
            for rl in request.resource_logs:
                resource = {kv.key: value_of(kv.value) for kv in rl.resource.attributes}
                for sl in rl.scope_logs:
                    for record in sl.log_records:
                        self.logs.append(ReceivedLog(record, resource, via))

    def wait_spans(self, predicate: Callable[[list[ReceivedSpan]], bool], timeout: float = 15.0) -> list[ReceivedSpan]:
        """The spans received, once ``predicate`` holds for them (the gateway exports each second)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                spans = list(self.spans)
            if predicate(spans):
                return spans
            if time.monotonic() > deadline:
                raise AssertionError(f"spans never matched; received {spans!r}")
            time.sleep(0.05)

    def wait_logs(self, predicate: Callable[[list[ReceivedLog]], bool], timeout: float = 15.0) -> list[ReceivedLog]:
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                logs = list(self.logs)
            if predicate(logs):
                return logs
            if time.monotonic() > deadline:
                raise AssertionError(f"log records never matched; received {[r.attributes for r in logs]!r}")
            time.sleep(0.05)

    def trace(self, trace_id: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]
