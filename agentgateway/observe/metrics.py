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

RequestKey = tuple[str, str, str, str, str, str]
# What a worker keys its series by: the label values as the request path has them (the method
# as bytes, the status as int); they become strings only when a snapshot is taken.
RawRequestKey = tuple[str, str, str, str, bytes, int]


class RequestMetrics:
    """count, sum of seconds and per-bucket counts (not cumulative) per label set."""

    __slots__ = ("series",)

    def __init__(self) -> None:
        self.series: dict[RawRequestKey, list[float]] = {}

    def observe(self, key: RawRequestKey, seconds: float) -> None:
        s = self.series.get(key)
        if s is None:
            s = self.series[key] = [0.0] * (len(DURATION_BUCKETS) + 3)
        s[0] += 1
        s[1] += seconds
        s[2 + bisect_left(DURATION_BUCKETS, seconds)] += 1

    def snapshot(self) -> list[list[object]]:
        return [
            [gateway, listener, route, backend, method.decode("latin-1"), str(status), *values]
            for (gateway, listener, route, backend, method, status), values in self.series.items()
        ]


class RequestTotals:
    """Sum of worker snapshots. Totals of workers that exited are kept so counters never go down."""

    def __init__(self) -> None:
        self.retired: dict[RequestKey, list[float]] = {}

    @staticmethod
    def _add(into: dict[RequestKey, list[float]], snapshot: Iterable[list[object]]) -> None:
        n = len(REQUEST_LABELS)
        for row in snapshot:
            key: RequestKey = tuple(str(x) for x in row[:n])  # type: ignore[assignment]
            values = [float(v) for v in row[n:]]  # type: ignore[arg-type]
            have = into.get(key)
            if have is None:
                into[key] = values
            else:
                for i, v in enumerate(values):
                    have[i] += v

    def retire(self, snapshot: Iterable[list[object]]) -> None:
        self._add(self.retired, snapshot)

    def families(self, live: Iterable[Iterable[list[object]]]) -> Iterator[Metric]:
        merged: dict[RequestKey, list[float]] = {k: list(v) for k, v in self.retired.items()}
        for snapshot in live:
            self._add(merged, snapshot)
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
        for key, values in sorted(merged.items()):
            requests.add_metric(list(key), values[0])
            cumulative = 0.0
            buckets = []
            for bound, count in zip((*DURATION_BUCKETS, float("inf")), values[2:], strict=False):
                cumulative += count
                buckets.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
            durations.add_metric(list(key), buckets, values[1])
        yield requests
        yield durations
