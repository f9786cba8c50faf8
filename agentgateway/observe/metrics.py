"""Request metrics kept per worker in plain dicts (an increment costs a dict lookup), collected by
the supervisor on scrape and summed over workers into Prometheus families."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric

# Labels of agentgateway_requests_total and agentgateway_request_duration_seconds, in key order.
REQUEST_LABELS = ("gateway", "listener", "route", "backend", "method", "status")
DURATION_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)

# What a worker keys its series by: the label values as the request path has them (the method
# as bytes, the status as int); they become strings only when a snapshot is taken.
RawRequestKey = tuple[str, str, str, str, bytes, int]


# Labels of agentgateway_mcp_requests_total.
MCP_LABELS = ("route", "method", "target", "tool")
McpKey = tuple[str, str, str, str]


class RequestMetrics:
    """A worker's counters. Requests: count, sum of seconds and per-bucket counts (not
    cumulative) per label set. MCP: a count per (route, method, target, tool)."""

    __slots__ = ("series", "mcp")

    def __init__(self) -> None:
        self.series: dict[RawRequestKey, list[float]] = {}
        self.mcp: dict[McpKey, int] = {}

    def observe(self, key: RawRequestKey, seconds: float) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0.0] * (len(DURATION_BUCKETS) + 3)
        s[0] += 1
        s[1] += seconds
        s[2 + bisect_left(DURATION_BUCKETS, seconds)] += 1

    def observe_mcp(self, key: McpKey) -> None:
        self.mcp[key] = self.mcp.get(key, 0) + 1

    def snapshot(self) -> dict[str, list[list[object]]]:
        return {
            "requests": [
                [gateway, listener, route, backend, method.decode("latin-1"), str(status), *values]
                for (gateway, listener, route, backend, method, status), values in self.series.items()
            ],
            "mcp": [[*key, count] for key, count in self.mcp.items()],
        }


Snapshot = dict[str, list[list[object]]]


def _add(into: dict[tuple[str, ...], list[float]], rows: Iterable[list[object]], labels: int) -> None:
    for row in rows:
        key = tuple(str(x) for x in row[:labels])
        values = [float(v) for v in row[labels:]]  # type: ignore[arg-type]
        have = into.get(key)
        if have is None:
            into[key] = values
        else:
            for i, v in enumerate(values):
                have[i] += v


class RequestTotals:
    """Sum of worker snapshots. Totals of workers that exited are kept so counters never go down."""

    def __init__(self) -> None:
        self.retired_requests: dict[tuple[str, ...], list[float]] = {}
        self.retired_mcp: dict[tuple[str, ...], list[float]] = {}

    def retire(self, snapshot: Snapshot) -> None:
        _add(self.retired_requests, snapshot.get("requests", ()), len(REQUEST_LABELS))
        _add(self.retired_mcp, snapshot.get("mcp", ()), len(MCP_LABELS))

    def families(self, live: Iterable[Snapshot]) -> Iterator[Metric]:
        requests_total = {k: list(v) for k, v in self.retired_requests.items()}
        mcp_total = {k: list(v) for k, v in self.retired_mcp.items()}
        for snapshot in live:
            _add(requests_total, snapshot.get("requests", ()), len(REQUEST_LABELS))
            _add(mcp_total, snapshot.get("mcp", ()), len(MCP_LABELS))
        requests = CounterMetricFamily(
            "agentgateway_requests",
            "HTTP requests served, by route, backend, method and status",
            labels=REQUEST_LABELS,
        )
        durations = HistogramMetricFamily(
            "agentgateway_request_duration_seconds",
            "Time from request head to the end of the response",
            labels=REQUEST_LABELS,
        )
        for key, values in sorted(requests_total.items()):
            requests.add_metric(list(key), values[0])
            cumulative = 0.0
            buckets = []
            for bound, count in zip((*DURATION_BUCKETS, float("inf")), values[2:], strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric(list(key), buckets, values[1])
        mcp = CounterMetricFamily(
            "agentgateway_mcp_requests", "MCP messages served, by method, target and tool", labels=MCP_LABELS
        )
        for key, values in sorted(mcp_total.items()):
            mcp.add_metric(list(key), values[0])
        yield requests
        yield durations
        yield mcp
