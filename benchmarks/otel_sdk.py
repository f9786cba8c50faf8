"""The same spans recorded with the OpenTelemetry Python SDK, for the ``tracing`` scenario.

The gateway records its spans as plain objects and writes OTLP itself (observe/otlp.py) instead
of using the SDK. This measures what the SDK would cost for the same work per request: a SERVER
span with the attributes the gateway sets on one (``server_attributes``), a CLIENT child for the
upstream call, the W3C ``traceparent`` injected into the upstream request, a
``ParentBased(TraceIdRatioBased(rate))`` sampler, and a ``BatchSpanProcessor`` (512 per batch,
queue 8,192, like the gateway's exporter) whose exporter encodes each batch as OTLP protobuf
(``opentelemetry-exporter-otlp-proto-common``) and drops it, so that encoding counts as it does
for the gateway. CPU time of the whole process (the processor's thread included) per request.

The SDK runs from its own virtualenv under ``benchmarks/.work`` (created on first use), so that its
pins never touch the gateway's environment.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from benchmarks import tools
from benchmarks.scenario import WORK_ROOT

SDK_VERSION = "1.45.2"
SDK_VENV = WORK_ROOT / "otel-sdk-venv"

# Runs in the SDK's venv: prints {"rate": µs per request} for each rate given in argv.
_MEASURE = r"""
import json, statistics, sys, time
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.propagate import inject
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import SpanKind, Status, StatusCode

class EncodeAndDrop(SpanExporter):
    def export(self, spans):
        encode_spans(spans).SerializeToString()
        return SpanExportResult.SUCCESS
    def shutdown(self):
        pass

SERVER = {
    "http.request.method": "GET", "url.path": "/x", "url.scheme": "http", "server.address": "bench",
    "client.address": "127.0.0.1", "network.peer.address": "127.0.0.1", "network.peer.port": 40000,
    "network.protocol.name": "http", "network.protocol.version": "1.1", "gateway": "bind/1",
    "listener": "listener0", "route": "bench", "http.route": "/", "user_agent.original": "wrk",
}
UPSTREAM = {
    "http.request.method": "GET", "server.address": "127.0.0.1", "server.port": 2, "url.path": "/x",
    "endpoint": "127.0.0.1:2",
}

def measure(rate, iterations):
    provider = TracerProvider(
        sampler=ParentBased(TraceIdRatioBased(rate)),
        resource=Resource.create({"service.name": "agentgateway"}),
    )
    processor = BatchSpanProcessor(
        EncodeAndDrop(), max_queue_size=8192, max_export_batch_size=512, schedule_delay_millis=1000
    )
    provider.add_span_processor(processor)
    tracer = provider.get_tracer("agentgateway")

    def request():
        server = tracer.start_span("GET /", kind=SpanKind.SERVER, attributes=SERVER)
        context = trace.set_span_in_context(server)
        call = tracer.start_span("GET", context=context, kind=SpanKind.CLIENT, attributes=UPSTREAM)
        carrier = {}
        inject(carrier, context=trace.set_span_in_context(call))
        call.set_attribute("http.response.status_code", 200)
        call.end()
        server.set_attribute("http.response.status_code", 200)
        server.set_status(Status(StatusCode.UNSET))
        server.end()

    runs = []
    for _ in range(3):
        start = time.process_time()
        for _ in range(iterations):
            request()
        processor.force_flush()
        runs.append((time.process_time() - start) / iterations * 1e6)
    provider.shutdown()
    return statistics.median(runs)

iterations = int(sys.argv[1])
print(json.dumps({rate: measure(float(rate), iterations) for rate in sys.argv[2:]}))
"""


def ensure_sdk() -> Path:
    """The SDK's virtualenv (first run: a minute of pip); its python."""
    return tools.pinned_venv(
        SDK_VENV,
        "opentelemetry-sdk",
        SDK_VERSION,
        [f"opentelemetry-sdk=={SDK_VERSION}", f"opentelemetry-exporter-otlp-proto-common=={SDK_VERSION}"],
    )


def sdk_cost(rates: tuple[float, ...], iterations: int = 20000) -> dict[float, float]:
    """µs of CPU per request for the SDK's spans at each sampling rate."""
    python = ensure_sdk()
    out = subprocess.run(
        [str(python), "-c", _MEASURE, str(iterations), *(repr(rate) for rate in rates)],
        capture_output=True,
        text=True,
        check=True,
    )
    return {float(rate): float(cost) for rate, cost in json.loads(out.stdout).items()}
