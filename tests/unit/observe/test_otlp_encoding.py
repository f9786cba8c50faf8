"""The OTLP wire format the gateway writes itself, decoded with the real message classes."""

from __future__ import annotations

from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from agentgateway._native import encode_span
from agentgateway.core.trace import CLIENT, SERVER, STATUS_ERROR, Span
from agentgateway.observe.otlp import LogRecord, encode_logs, encode_spans, resource
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
        [encode_span(trace_id, server, b"vendor=a"), encode_span(trace_id, child, None)],
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


def test_span_values_the_native_encoder_converts():
    """Values of every kind a span may carry reach the collector as the protobuf classes read
    them: bytes and lone surrogates as valid UTF-8, tuples as arrays, other objects as text."""

    class Code:
        def __str__(self) -> str:
            return "code-7"

    attributes: dict[str, object] = {
        "raw": b"\xffab",
        "surrogate": "a\udcff",
        "tuple": ("x", 2),
        "nested": {"k": [1, {"d": 0.5}]},
        "object": Code(),
        "false": False,
        "zero": 0,
        "min": -(2**63),
        "max": 2**63 - 1,
    }
    span = Span("n\udcff", CLIENT, 1, 2, attributes)
    raw = encode_spans([encode_span(2**128 - 1, span, b"")], resource({}))
    decoded = trace_service_pb2.ExportTraceServiceRequest.FromString(raw).resource_spans[0].scope_spans[0].spans[0]
    got = {kv.key: value_of(kv.value) for kv in decoded.attributes}
    # A lone surrogate becomes replacement characters (one per byte of its surrogate escape).
    assert got.pop("surrogate").strip("\ufffd") == "a"
    assert decoded.name.strip("\ufffd") == "n"
    assert got == {
        "raw": "\ufffdab",
        "tuple": ["x", 2],
        "nested": {"k": [1, {"d": 0.5}]},
        "object": "code-7",
        "false": False,
        "zero": 0,
        "min": -(2**63),
        "max": 2**63 - 1,
    }
    assert decoded.trace_id == b"\xff" * 16 and decoded.trace_state == ""
    assert decoded.end_time_unix_nano == decoded.start_time_unix_nano  # not ended: ends when it started


def test_values_nested_too_deeply_or_cyclic_are_cut():
    """Converting and encoding a value recurse: a list 10,000 levels deep, or one containing
    itself, would exhaust the exporter thread's stack (and end the process). Past 16 levels a
    container becomes a marker text (within what protobuf decoders accept); what is above it is
    kept."""
    deep: list[object] = ["leaf"]
    for _ in range(10_000):
        deep = [deep]
    cyclic: list[object] = ["x"]
    cyclic.append(cyclic)
    loop: dict[str, object] = {}
    loop["self"] = loop
    span = Span("deep", CLIENT, 1, 2, {"deep": deep, "cyclic": cyclic, "map": loop, "ok": [[1]]})
    raw = encode_spans([encode_span(1, span, None)], resource({}))
    decoded = trace_service_pb2.ExportTraceServiceRequest.FromString(raw).resource_spans[0].scope_spans[0].spans[0]
    got = {kv.key: value_of(kv.value) for kv in decoded.attributes}
    assert got["ok"] == [[1]]
    level: object = got["deep"]
    for _ in range(16):
        assert isinstance(level, list) and len(level) == 1
        level = level[0]
    assert level == "[nested too deeply]"
    assert got["cyclic"][0] == "x" and isinstance(got["cyclic"][1], list)
    assert isinstance(got["map"]["self"], dict)
