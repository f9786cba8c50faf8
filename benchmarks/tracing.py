"""Scenario ``tracing``: what tracing costs per request, at 100 % and at 1 % sampling.

For each sampling rate, two gateways (one worker each) front the same upstream (nginx, 1 KiB from
memory): *bare* without tracing, *traced* with ``config.tracing`` (``randomSampling`` at the rate)
exporting over OTLP/HTTP to a sink in the benchmark process. Measured interleaved and pinned like
``policies`` (paired.py); the added cost is the difference of the gateways' CPU time per request
(the exporter thread's encoding included: it runs in the gateway process). An in-process measure
of the tracing code alone (decide, propagate, record the server span and the upstream call's,
and encode them as OTLP) is printed beside it, for the HTTP path and for an LLM provider call,
next to what the OpenTelemetry SDK costs for the same spans (benchmarks/otel_sdk.py).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from benchmarks import paired
from benchmarks.otel_sdk import SDK_VERSION, sdk_cost
from benchmarks.otlp_sink import OtlpSink
from benchmarks.report import write_section
from benchmarks.scenario import RunOptions, Scenario, add_run_options, run_options

NAME = "tracing"
DEFAULT_BASE_PORT = 18380
RATES = (1.0, 0.01)
BUDGET_US = {1.0: 40.0, 0.01: 10.0}  # the targets for the added CPU per request


def tracing_settings(endpoint: str, rate: float) -> str:
    return f'  tracing: {{otlpEndpoint: "{endpoint}", otlpProtocol: http, randomSampling: {rate}}}\n'


def in_process(rate: float, llm: bool = False, iterations: int = 20000) -> float:
    """µs per request of the tracing code alone, encoding of the sampled spans included."""
    from agentgateway._native import encode_span
    from agentgateway.config.compile import compile_config
    from agentgateway.config.loader import decode_config
    from agentgateway.core.context import RequestCtx
    from agentgateway.observe.otlp import SpanRecord, encode_spans, resource
    from agentgateway.observe.tracing import Tracer, end_call, end_provider_call, start_provider_call, start_upstream

    class Facts:
        def log_fields(self, fields: dict[str, object], status: int) -> None:
            fields.update(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024",
                    "gen_ai.usage.input_tokens": 16,
                    "gen_ai.usage.output_tokens": 7,
                }
            )

        def span_fields(self, fields: dict[str, object], status: int) -> None:
            fields.update(
                {
                    "gen_ai.operation.name": "chat",
                    "gen_ai.provider.name": "openai",
                    "gen_ai.request.model": "gpt-4o-mini",
                    "gen_ai.response.model": "gpt-4o-mini-2024",
                }
            )

    class Collect:
        signal = "traces"

        def __init__(self) -> None:
            self.records: list[SpanRecord] = []

        def offer_many(self, records: list[SpanRecord]) -> None:
            self.records.extend(records)

    config = paired.gateway_config(1, 2, 3, 4, "", tracing_settings("http://127.0.0.1:9", rate))
    runtime = compile_config(decode_config(config))
    assert runtime.tracing is not None
    sink = Collect()
    tracer = Tracer(runtime.tracing, sink)  # type: ignore[arg-type]
    headers = [(b"host", b"bench"), (b"user-agent", b"wrk"), (b"accept", b"*/*")]
    facts = Facts()
    res = resource(runtime.tracing.resource)

    def request(traced: bool) -> None:
        ctx = RequestCtx(
            b"POST" if llm else b"GET", b"/x", b"/x", b"", b"bench", list(headers), "1.1", True, None, False, False,
            "127.0.0.1", 40000, b"http", time.perf_counter(), "bind/1",
        )  # fmt: skip
        ctx.route, ctx.listener, ctx.match_prefix = "bench", "listener0", b"/"
        if not traced:
            ctx.status = 200
            return
        tracer.begin(ctx)
        if llm:
            ctx.llm = facts
            span = start_provider_call(ctx, facts, "openai", "gpt-4o-mini")
            ctx.status = 200
            if span is not None:
                end_provider_call(span, facts, 200, "")
        else:
            span = start_upstream(ctx, "127.0.0.1", 2, "127.0.0.1:2")
            ctx.status = 200
            if span is not None:
                end_call(span, 200)
        tracer.finish(ctx, 0.001, None)
        if len(sink.records) >= 512:
            encode_spans([encode_span(*r) for r in sink.records], res)
            sink.records.clear()

    results: dict[bool, list[float]] = {True: [], False: []}
    for _ in range(3):
        for traced in (True, False):
            start = time.process_time()
            for _ in range(iterations):
                request(traced)
            results[traced].append((time.process_time() - start) / iterations * 1e6)
    return statistics.median(results[True]) - statistics.median(results[False])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)


def run(args: argparse.Namespace) -> int:
    options: RunOptions = run_options(args, NAME)
    sections = []
    # The design choice measured: the same spans with the OpenTelemetry SDK (its own venv).
    sdk = sdk_cost(RATES)
    for i, rate in enumerate(RATES):
        http_alone = in_process(rate)
        llm_alone = in_process(rate, llm=True)
        print(
            f"{NAME}: sampling {rate:.0%}, tracing code alone, in process: HTTP {http_alone:.2f} µs/request, "
            f"LLM {llm_alone:.2f} µs/request; the OpenTelemetry SDK for the same spans {sdk[rate]:.2f} µs/request",
            file=sys.stderr,
        )
        sink_port = options.base_port + 50 + i
        run_opts = RunOptions(**{**options.__dict__, "base_port": options.base_port + 100 * i})
        with OtlpSink(sink_port) as sink:
            samples = paired.measure(run_opts, "traced", "", {}, tracing_settings(sink.endpoint, rate))
            exported = sink.exports
        name = f"traced at {rate:.0%}"
        sections.append(
            f"### Sampling {rate:.0%}\n\n"
            + paired.summarise(samples, "traced", options.rounds)
            + f"- In-process, the tracing code alone (spans encoded as OTLP included): HTTP route "
            f"{http_alone:.1f} µs, LLM provider call {llm_alone:.1f} µs per request "
            f"(target: ≤ {BUDGET_US[rate]:g} µs added); {exported} OTLP exports reached the sink ({name}).\n"
            f"- The same spans with the OpenTelemetry SDK {SDK_VERSION} (server + client span, traceparent "
            f"injected, ParentBased(TraceIdRatioBased) sampler, BatchSpanProcessor encoding OTLP), in process: "
            f"{sdk[rate]:.1f} µs per request, {sdk[rate] / max(http_alone, 0.01):.1f}× the gateway's own.\n"
        )
    text = (
        f"## {NAME} — cost of tracing per request (OTLP export on)\n\n"
        "Per sampling rate, two gateways in front of the same upstream (nginx, 1 KiB from memory): *bare* "
        "without tracing, *traced* with `config.tracing` (randomSampling at the rate, OTLP/HTTP to a sink in "
        "the benchmark process). The added cost is the difference in the gateway's CPU time per request "
        "(its exporter thread included), paired per round.\n\n"
        + paired.facts(options, "Tracing: config.tracing, server span + upstream call span per sampled request")
        + "\n"
        + "\n".join(sections)
    )
    print(text)
    if options.results_path is not None:
        write_section(NAME, text, options.results_path)
        print(f"wrote the {NAME} section of {options.results_path}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary="per-request CPU of tracing (OTLP export) at 100% and 1% sampling vs no tracing",
    add_arguments=add_arguments,
    run=run,
)
