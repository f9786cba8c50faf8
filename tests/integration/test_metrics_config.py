"""config.metrics through the daemon: extra labels from CEL, families removed, and exemplars
(the trace ids of traced requests) on the latency histogram in the OpenMetrics exposition."""

from __future__ import annotations

import re

import httpx

from tests.support.gateway import binds, free_port


def test_extra_labels_and_removed_families(gateway, upstream):
    up = upstream("a")
    port = free_port()
    config = binds(port, [{"name": "api", "backends": [{"host": up.address}]}])
    config["config"] = {
        "metrics": {
            "fields": {"add": {"tenant": 'request.headers["x-tenant"]', "code_class": "string(response.code / 100)"}},
            "remove": ["request_duration", "agentgateway_retries"],
        }
    }
    gw = gateway(config)
    with httpx.Client() as client:
        client.get(f"http://127.0.0.1:{port}/x", headers={"x-tenant": "acme"})
        client.get(f"http://127.0.0.1:{port}/x")
    assert gw.metric("agentgateway_requests_total", tenant="acme", code_class="2") == 1
    assert gw.metric("agentgateway_requests_total", tenant="unknown", code_class="2") == 1  # no header
    text = gw.metrics_text()
    assert "agentgateway_request_duration_seconds" not in text
    assert "agentgateway_retries_total" not in text
    assert "agentgateway_mcp_requests" in text  # the others stay


def test_exemplars_carry_trace_ids(gateway, upstream, otlp):
    up = upstream("a")
    port = free_port()
    config = binds(port, [{"name": "api", "backends": [{"host": up.address}]}])
    config["config"] = {"tracing": {"otlpEndpoint": otlp.grpc_endpoint, "randomSampling": True}}
    gw = gateway(config)
    httpx.get(f"http://127.0.0.1:{port}/x")
    spans = otlp.wait_spans(lambda s: any(x.kind == 2 for x in s))
    trace_id = next(x for x in spans if x.kind == 2).trace_id
    r = httpx.get(
        f"http://127.0.0.1:{gw.stats_port}/metrics", headers={"accept": "application/openmetrics-text; version=1.0.0"}
    )
    assert r.headers["content-type"].startswith("application/openmetrics-text")
    lines = [line for line in r.text.splitlines() if line.startswith("agentgateway_request_duration_seconds_bucket")]
    assert any(re.search(rf'# \{{trace_id="{trace_id}"\}} [0-9.e-]+', line) for line in lines), lines
    # The classic Prometheus text (no exemplars) is what a plain scrape gets.
    assert "trace_id" not in gw.metrics_text()
