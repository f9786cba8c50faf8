"""The OTLP wire format the gateway writes itself, decoded with the real message classes."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from agentgateway.core.trace import CLIENT, SERVER, STATUS_ERROR, Span
from agentgateway.observe.otlp import LogRecord, SpanRecord, encode_logs, encode_spans, resource
from tests.support.otlp import value_of

ATTRIBUTES: dict[str, object] = {
    "s": "text é",
    "long": "x" * 20000,
    "i": 200,
    "neg": -5,
    "big": 2**70,
    "f": 0.25,
    "b": True,
    "l": ["a", 1, False],
    "m": {"k": "v", "n": 2},
    "none": None,
}


def test_spans_decode():
    server = Span("GET /api", SERVER, 0x1122334455667788, 0xAABBCCDDEEFF0011, dict(ATTRIBUTES))
    server.end_ns = server.start_ns + 5
    server.status, server.message = STATUS_ERROR, "boom"
    child = Span("GET", CLIENT, 0x99, 0x1122334455667788, {"k": "v"})
    trace_id = 0x4BF92F3577B34DA6A3CE929D0E0E4736
    raw = encode_spans(
        [SpanRecord(trace_id, server, b"vendor=a"), SpanRecord(trace_id, child, None)],
        resource({"service.name": "agentgateway"}),
    )
    request = trace_service_pb2.ExportTraceServiceRequest.FromString(raw)
    rs = request.resource_spans[0]
    assert {kv.key: value_of(kv.value) for kv in rs.resource.attributes} == {"service.name": "agentgateway"}
    scope = rs.scope_spans[0]
    assert scope.scope.name == "agentgateway"
    first, second = scope.spans
    assert first.trace_id.hex() == f"{trace_id:032x}"
    assert first.span_id.hex() == "1122334455667788" and first.parent_span_id.hex() == "aabbccddeeff0011"
    assert first.name == "GET /api" and first.kind == SERVER and first.trace_state == "vendor=a"
    assert first.end_time_unix_nano - first.start_time_unix_nano == 5
    assert first.status.code == STATUS_ERROR and first.status.message == "boom"
    assert first.flags == 0x301
    got = {kv.key: value_of(kv.value) for kv in first.attributes}
    expected = {k: v for k, v in ATTRIBUTES.items() if v is not None}
    expected["big"] = str(2**70)
    expected["l"] = ["a", 1, False]
    assert got == expected
    assert second.parent_span_id.hex() == "1122334455667788" and second.kind == CLIENT and second.flags == 0x101


def test_logs_decode():
    raw = encode_logs([LogRecord(123, "line", {"http.status": 200}, 0xABC, 0xDEF)], resource({}))
    request = logs_service_pb2.ExportLogsServiceRequest.FromString(raw)
    record = request.resource_logs[0].scope_logs[0].log_records[0]
    assert record.time_unix_nano == 123 and record.body.string_value == "line"
    assert record.severity_text == "info" and record.severity_number == 9
    assert record.trace_id.hex() == f"{0xABC:032x}" and record.span_id.hex() == f"{0xDEF:016x}"
    assert record.event_name == "request"
    assert {kv.key: value_of(kv.value) for kv in record.attributes} == {"http.status": 200}
