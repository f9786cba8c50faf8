"""The traffic history: rates from the metric families the supervisor serves, percentiles from
the duration histogram, a bounded ring and bounded keys."""

from __future__ import annotations

from agentgateway.admin.history import ALL_ROUTES, MAX_KEYS, OTHER, TrafficHistory, percentile
from agentgateway.observe.counters import CounterTotals
from agentgateway.observe.metrics import RequestMetrics, RequestTotals


def _families(metrics: RequestMetrics, counters: list[list[object]] | None = None) -> list:
    return [*RequestTotals().families([metrics.snapshot()]), *CounterTotals().families([counters or []])]


def test_rates_by_route_status_and_latency() -> None:
    metrics = RequestMetrics()
    history = TrafficHistory(period=2.0, keep=10.0)
    history.add(100.0, _families(metrics))
    for _ in range(10):
        metrics.observe(("gw", "l", "web", "b", b"GET", 200), 0.004)
    for _ in range(10):
        metrics.observe(("gw", "l", "api", "b", b"POST", 503), 0.2)
    metrics.observe_mcp(("tools", "tools/call", "demo", "echo"))
    metrics.observe(("gw", "l", "tools", "b", b"POST", 500), 0.01)
    metrics.observe_genai(
        "agentgateway_gen_ai_client_token_usage", ("chat", "openai", "gpt", "gpt", "llm", "input"), 30
    )
    counters = [["agentgateway_rate_limit_decisions", ["gw", "l", "web", "local", "limited"], 4.0]]
    history.add(102.0, _families(metrics, counters))
    series = history.series()
    charts = series["charts"]
    assert series["times"] == [102.0]
    assert charts["requests"]["series"] == {"api": [5.0], "tools": [0.5], "web": [5.0]}
    assert charts["status"]["series"] == {"2xx": [5.0], "5xx": [5.5]}
    assert charts["mcpCalls"]["series"] == {"echo": [0.5]}
    assert charts["mcpErrors"]["series"] == {"tools": [0.5]}
    assert charts["tokensByModel"]["series"] == {"gpt (input)": [15.0]}
    assert charts["rateLimited"]["series"] == {"web": [2.0]}
    web = charts["latency"]["routes"]["web"]
    assert 2.5 < web["p50"][0] <= 5.0 and web["p99"][0] <= 5.0
    assert 100 < charts["latency"]["routes"]["api"]["p90"][0] <= 250
    assert ALL_ROUTES in charts["latency"]["routes"]
    # Nothing new: an empty sample, no latency point.
    history.add(104.0, _families(metrics, counters))
    assert history.series()["charts"]["requests"]["series"]["web"] == [5.0, 0.0]
    assert history.series()["charts"]["latency"]["routes"]["web"]["p50"][1] is None


def test_the_ring_and_the_keys_are_bounded() -> None:
    metrics = RequestMetrics()
    history = TrafficHistory(period=1.0, keep=5.0)
    history.add(0.0, _families(metrics))
    for t in range(1, 20):
        for i in range(MAX_KEYS + 10):
            metrics.observe(("gw", "l", f"route{i}", "b", b"GET", 200), 0.001 * (i + 1))
        history.add(float(t), _families(metrics))
    assert len(history.samples) == 6
    last = history.samples[-1]
    assert len(last.rates["requests"]) == MAX_KEYS and OTHER in last.rates["requests"]
    assert len(last.latency) <= MAX_KEYS
    assert history.series(window=2.5, now=19.0)["times"] == [17.0, 18.0, 19.0]


def test_percentiles() -> None:
    assert percentile([(1.0, 0.0), (float("inf"), 0.0)], 0.5) is None
    assert percentile([(1.0, 10.0), (2.0, 10.0), (float("inf"), 0.0)], 0.5) == 1.0
    assert percentile([(1.0, 10.0), (2.0, 10.0), (float("inf"), 0.0)], 0.75) == 1.5
    assert percentile([(1.0, 0.0), (float("inf"), 5.0)], 0.99) == 1.0


def test_traffic_before_the_first_sample_is_shown() -> None:
    """Requests served between startup and the first sample count from the zero of the counters
    (the first sample is not a mere baseline)."""
    metrics = RequestMetrics()
    history = TrafficHistory(period=2.0, keep=10.0)
    history.begin(100.0)
    for _ in range(30):
        metrics.observe(("gw", "l", "web", "b", b"GET", 200), 0.001)
    history.add(102.0, _families(metrics))
    assert history.series()["charts"]["requests"]["series"] == {"web": [15.0]}
