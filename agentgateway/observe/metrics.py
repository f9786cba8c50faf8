"""Request metrics kept per worker in plain dicts (an increment costs a dict lookup), collected by
the supervisor on scrape and summed over workers into Prometheus families."""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING

from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.samples import Exemplar

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx


class MetricSettings:
    """``config.metrics``: families left out (``remove``, by name without the ``agentgateway_``
    prefix or ``_total``), and extra labels (``fields.add``: label name: CEL expression, evaluated
    when the request ends; a failed or non-string value is ``unknown``)."""

    __slots__ = ("remove", "labels")

    def __init__(
        self,
        remove: frozenset[str] = frozenset(),
        labels: tuple[tuple[str, Callable[[RequestCtx, dict[str, object] | None], object]], ...] = (),
    ) -> None:
        self.remove = remove
        self.labels = labels

    @property
    def label_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.labels)


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
# as bytes, the status as int); they become strings only when a snapshot is taken. The labels
# of ``config.metrics.fields.add`` follow, as strings, when configured.
RawRequestKey = tuple[object, ...]


# Series one worker keeps per family at most. Some label values come from the client (an MCP
# method or tool name, an LLM model name): without a bound, a client sending a new name per
# request would grow the gateway's memory and every scrape without end. Past the bound, new
# label sets are counted under one series whose labels are all ``OVERFLOW``.
MAX_SERIES = 10_000
OVERFLOW = "other"


# Labels of agentgateway_mcp_requests_total.
MCP_LABELS = ("route", "method", "target", "tool")
McpKey = tuple[str, str, str, str]

# GenAI histograms (OTel GenAI semantic conventions; bucket bounds as the conventions advise).
GENAI_LABELS = (
    "gen_ai_operation_name",
    "gen_ai_provider_name",
    "gen_ai_request_model",
    "gen_ai_response_model",
    "route",
)
GenAiKey = tuple[str, str, str, str, str]
TOKEN_BUCKETS = (1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0)
GENAI_DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TTFT_BUCKETS = (0.001, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
# name → (help, extra label, buckets)
GENAI_FAMILIES: dict[str, tuple[str, tuple[str, ...], tuple[float, ...]]] = {
    "agentgateway_gen_ai_client_token_usage": (
        "Tokens used per LLM call, by token type (input includes cached tokens)",
        ("gen_ai_token_type",),
        TOKEN_BUCKETS,
    ),
    "agentgateway_gen_ai_server_request_duration": (
        "Time from request head to the end of the LLM response, in seconds",
        ("error_type",),
        GENAI_DURATION_BUCKETS,
    ),
    "agentgateway_gen_ai_server_time_to_first_token": (
        "Time from request head to the first streamed output relayed, in seconds",
        (),
        TTFT_BUCKETS,
    ),
}


class RequestMetrics:
    """A worker's counters. Requests: count, sum of seconds and per-bucket counts (not
    cumulative) per label set. MCP: a count per (route, method, target, tool)."""

    __slots__ = ("series", "mcp", "genai", "exemplars")

    def __init__(self) -> None:
        self.series: dict[RawRequestKey, list[float]] = {}
        self.mcp: dict[McpKey, int] = {}
        self.genai: dict[str, dict[tuple[str, ...], list[float]]] = {name: {} for name in GENAI_FAMILIES}
        # The latest traced request per duration bucket of a series: (trace id, seconds, time).
        self.exemplars: dict[tuple[RawRequestKey, int], tuple[str, float, float]] = {}

    def observe(self, key: RawRequestKey, seconds: float, trace_id: str = "") -> None:
        series = self.series
        s = series.get(key)
        if s is None:
            if len(key) > 6 and len(series) >= MAX_SERIES:
                # Extra labels (config.metrics) may come from the client: bounded like the others.
                key = (*key[:6], *(OVERFLOW,) * (len(key) - 6))
                s = series.get(key)
            if s is None:
                s = series[key] = [0.0] * (len(DURATION_BUCKETS) + 3)
        s[0] += 1
        s[1] += seconds
        bucket = bisect_left(DURATION_BUCKETS, seconds)
        s[2 + bucket] += 1
        if trace_id:
            self.exemplars[(key, bucket)] = (trace_id, seconds, time.time())

    def observe_mcp(self, key: McpKey) -> None:
        mcp = self.mcp
        count = mcp.get(key)
        if count is None and len(mcp) >= MAX_SERIES:
            key = (OVERFLOW, OVERFLOW, OVERFLOW, OVERFLOW)
            count = mcp.get(key)
        mcp[key] = (count or 0) + 1

    def observe_genai(self, family: str, key: tuple[str, ...], value: float) -> None:
        series = self.genai[family]
        s = series.get(key)
        buckets = GENAI_FAMILIES[family][2]
        if s is None:
            if len(series) >= MAX_SERIES:
                key = (OVERFLOW,) * len(key)
                s = series.get(key)
            if s is None:
                s = series[key] = [0.0] * (len(buckets) + 3)
        s[0] += 1
        s[1] += value
        s[2 + bisect_left(buckets, value)] += 1

    def snapshot(self) -> dict[str, list[list[object]]]:
        return {
            "requests": [[*_labels(key), *values] for key, values in self.series.items()],
            "exemplars": [[*_labels(key), bucket, *exemplar] for (key, bucket), exemplar in self.exemplars.items()],
            "mcp": [[*key, count] for key, count in self.mcp.items()],
            **{name: [[*key, *values] for key, values in series.items()] for name, series in self.genai.items()},
        }


Snapshot = dict[str, list[list[object]]]


def _labels(key: RawRequestKey) -> list[object]:
    gateway, listener, route, backend, method, status = key[:6]
    assert isinstance(method, bytes)
    return [gateway, listener, route, backend, method.decode("latin-1"), str(status), *key[6:]]


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
    """Sum of worker snapshots. Totals of workers that exited are kept so counters never go down.
    ``extra`` names the labels of ``config.metrics.fields.add``; ``remove`` the families left out."""

    def __init__(self, extra: tuple[str, ...] = (), remove: frozenset[str] = frozenset()) -> None:
        self.extra = extra
        self.remove = remove
        self.request_labels = (*REQUEST_LABELS, *extra)
        self.retired_requests: dict[tuple[str, ...], list[float]] = {}
        self.retired_mcp: dict[tuple[str, ...], list[float]] = {}
        self.retired_genai: dict[str, dict[tuple[str, ...], list[float]]] = {name: {} for name in GENAI_FAMILIES}

    def retire(self, snapshot: Snapshot) -> None:
        _add(self.retired_requests, snapshot.get("requests", ()), len(self.request_labels))
        _add(self.retired_mcp, snapshot.get("mcp", ()), len(MCP_LABELS))
        for name, (_, extra, _) in GENAI_FAMILIES.items():
            _add(self.retired_genai[name], snapshot.get(name, ()), len(GENAI_LABELS) + len(extra))

    def removed(self, name: str) -> bool:
        """``config.metrics.remove`` names a family as exposed, or without ``agentgateway_``
        (agentgateway's registered names), with or without a unit suffix."""
        if not self.remove:
            return False
        short = name.removeprefix("agentgateway_")
        return bool({name, short, short.removesuffix("_seconds")} & self.remove)

    def families(self, live: Iterable[Snapshot]) -> Iterator[Metric]:
        labels = self.request_labels
        requests_total = {k: list(v) for k, v in self.retired_requests.items()}
        mcp_total = {k: list(v) for k, v in self.retired_mcp.items()}
        genai_total = {name: {k: list(v) for k, v in series.items()} for name, series in self.retired_genai.items()}
        exemplars: dict[tuple[tuple[str, ...], int], tuple[str, float, float]] = {}
        live = list(live)
        for snapshot in live:
            _add(requests_total, snapshot.get("requests", ()), len(labels))
            _add(mcp_total, snapshot.get("mcp", ()), len(MCP_LABELS))
            for name, (_, extra, _) in GENAI_FAMILIES.items():
                _add(genai_total[name], snapshot.get(name, ()), len(GENAI_LABELS) + len(extra))
            for row in snapshot.get("exemplars", ()):
                key = tuple(str(x) for x in row[: len(labels)])
                bucket, trace_id, value, when = row[len(labels) :]
                have = exemplars.get((key, int(bucket)))  # type: ignore[call-overload]
                if have is None or float(when) > have[2]:  # type: ignore[arg-type]
                    exemplars[(key, int(bucket))] = (str(trace_id), float(value), float(when))  # type: ignore[arg-type,call-overload]
        requests = CounterMetricFamily(
            "agentgateway_requests",
            "HTTP requests served, by route, backend, method and status",
            labels=labels,
        )
        durations = HistogramMetricFamily(
            "agentgateway_request_duration_seconds",
            "Time from request head to the end of the response",
            labels=labels,
        )
        for key, values in sorted(requests_total.items()):
            requests.add_metric(list(key), values[0])
            cumulative = 0.0
            buckets: list[tuple[str, float] | tuple[str, float, Exemplar]] = []
            for i, (bound, count) in enumerate(zip((*DURATION_BUCKETS, float("inf")), values[2:], strict=False)):
                cumulative += count
                le = "+Inf" if bound == float("inf") else repr(bound)
                exemplar = exemplars.get((key, i))
                if exemplar is not None:
                    trace_id, value, when = exemplar
                    buckets.append((le, cumulative, Exemplar({"trace_id": trace_id}, value, when)))
                else:
                    buckets.append((le, cumulative))
            durations.add_metric(list(key), buckets, values[1])
        mcp = CounterMetricFamily(
            "agentgateway_mcp_requests", "MCP messages served, by method, target and tool", labels=MCP_LABELS
        )
        for key, values in sorted(mcp_total.items()):
            mcp.add_metric(list(key), values[0])
        for family in (requests, durations, mcp):
            if not self.removed(family.name):
                yield family
        for name, (text, extra, bounds) in GENAI_FAMILIES.items():
            if self.removed(name):
                continue
            family = HistogramMetricFamily(name, text, labels=(*GENAI_LABELS, *extra))
            for key, values in sorted(genai_total[name].items()):
                cumulative = 0.0
                points = []
                for bound, count in zip((*bounds, float("inf")), values[2:], strict=False):
                    cumulative += count
                    points.append(("+Inf" if bound == float("inf") else repr(bound), cumulative))
                family.add_metric(list(key), points, values[1])
            yield family
