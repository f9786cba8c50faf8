"""Label values a client chooses (MCP tool names, LLM model names) cannot grow the metrics without
bound: past ``MAX_SERIES`` series a family counts new label sets under one overflow series."""

from __future__ import annotations

from agentgateway.observe import metrics
from agentgateway.observe.counters import Counters
from agentgateway.observe.metrics import OVERFLOW, RequestMetrics


def test_mcp_and_genai_series_are_bounded(monkeypatch):
    monkeypatch.setattr(metrics, "MAX_SERIES", 5)
    m = RequestMetrics()
    for i in range(50):
        m.observe_mcp(("r", "tools/call", "t", f"tool-{i}"))
        m.observe_genai(
            "agentgateway_gen_ai_server_request_duration", ("chat", "openai", f"m{i}", f"m{i}", "r", ""), 0.1
        )
    assert len(m.mcp) == 6  # five real series and the overflow one
    assert m.mcp[(OVERFLOW,) * 4] == 45
    durations = m.genai["agentgateway_gen_ai_server_request_duration"]
    assert len(durations) == 6 and durations[(OVERFLOW,) * 6][0] == 45
    # Series already known keep counting after the bound is reached.
    m.observe_mcp(("r", "tools/call", "t", "tool-0"))
    assert m.mcp[("r", "tools/call", "t", "tool-0")] == 2


def test_counters_are_bounded_per_family(monkeypatch):
    import agentgateway.observe.counters as counters

    monkeypatch.setattr(counters, "MAX_SERIES", 3)
    c = Counters()
    for i in range(10):
        c.inc("agentgateway_a2a_requests", ("g", "l", "r", f"method-{i}", "JSONRPC", "", ""))
        c.inc("agentgateway_retries", ("g", "l", "r", f"b{i}"))
    a2a = {k: v for k, v in c.values.items() if k[0] == "agentgateway_a2a_requests"}
    assert len(a2a) == 4 and a2a[("agentgateway_a2a_requests", (OVERFLOW,) * 7)] == 7
    retries = {k: v for k, v in c.values.items() if k[0] == "agentgateway_retries"}
    assert len(retries) == 4  # each family has its own bound


def test_extra_labels_from_config_metrics_are_bounded(monkeypatch):
    """config.metrics.fields.add labels may come from the client (a header): bounded too."""
    monkeypatch.setattr(metrics, "MAX_SERIES", 5)
    m = RequestMetrics()
    for i in range(50):
        m.observe(("bind/1", "l", "r", "b", b"GET", 200, f"tenant-{i}"), 0.01, trace_id=f"{i:032x}")
    assert len(m.series) == 6
    assert m.series[("bind/1", "l", "r", "b", b"GET", 200, OVERFLOW)][0] == 45
    # The exemplars are kept per series and bucket: bounded with them.
    assert len(m.exemplars) == 6
    totals = metrics.RequestTotals(extra=("tenant",))
    families = {f.name: f for f in totals.families([m.snapshot()])}
    samples = families["agentgateway_request_duration_seconds"].samples
    assert any(s.exemplar is not None and s.exemplar.labels["trace_id"] == f"{49:032x}" for s in samples)
