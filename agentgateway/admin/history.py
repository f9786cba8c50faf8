"""The last 15 minutes of traffic, kept in memory for the UI's traffic page (no Prometheus needed).

The supervisor samples the metric families it serves on ``/metrics`` (summed over workers, those
that exited included) every ``SAMPLE_PERIOD`` seconds and hands them to ``TrafficHistory.add``.
Each sample keeps what changed since the one before, as rates per second: requests by route and
by status class, latency percentiles per route (from the duration histogram's buckets), LLM
tokens by model and by route, MCP calls by tool and HTTP errors on MCP routes, A2A calls by
method, and rate-limit rejections by route. A sample keeps only the keys that moved, at most
``MAX_KEYS`` per chart (the busiest, the rest summed as ``other``), so the ring stays small
however many routes, models or tools the gateway has: at most ``KEEP_SECONDS / SAMPLE_PERIOD``
samples of a few hundred numbers each.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable
from typing import Any

from prometheus_client.metrics_core import Metric

SAMPLE_PERIOD = 2.0
KEEP_SECONDS = 900.0
MAX_KEYS = 20
OTHER = "other"
PERCENTILES = (0.5, 0.9, 0.99)
ALL_ROUTES = "(all routes)"
NO_ROUTE = "(no route)"  # requests no route matched (404s of the listener) are labelled route=""

# chart → (title, unit); the page draws them in this order.
CHARTS: dict[str, tuple[str, str]] = {
    "requests": ("Requests per second by route", "req/s"),
    "status": ("Requests per second by status class", "req/s"),
    "latency": ("Latency percentiles", "ms"),
    "tokensByModel": ("LLM tokens per second by model", "tokens/s"),
    "tokensByRoute": ("LLM tokens per second by route", "tokens/s"),
    "mcpCalls": ("MCP calls per second by tool (or method)", "calls/s"),
    "mcpErrors": ("MCP errors per second (HTTP 4xx/5xx on MCP routes)", "errors/s"),
    "a2aCalls": ("A2A calls per second by method", "calls/s"),
    "rateLimited": ("Rate-limit rejections per second by route", "rejections/s"),
}

Totals = dict[str, dict[str, float]]
Buckets = dict[str, list[tuple[float, float]]]  # route → [(upper bound, cumulative count)]


def _add(into: dict[str, float], key: str, value: float) -> None:
    into[key] = into.get(key, 0.0) + value


def _reduce(families: Iterable[Metric]) -> tuple[Totals, Buckets]:
    """Cumulative totals per chart and key, and the duration histogram per route, from the
    families as ``/metrics`` serves them."""
    totals: Totals = {name: {} for name in CHARTS if name != "latency"}
    buckets: dict[str, dict[float, float]] = {}
    mcp_routes: set[str] = set()
    errors_by_route: dict[str, float] = {}
    for family in families:
        name = family.name
        for sample in family.samples:
            labels = sample.labels
            value = float(sample.value)
            if name == "agentgateway_requests" and sample.name.endswith("_total"):
                route = labels.get("route") or NO_ROUTE
                _add(totals["requests"], route, value)
                status = labels.get("status", "")
                _add(totals["status"], f"{status[:1]}xx" if status[:1].isdigit() else status or "?", value)
                if status[:1] in ("4", "5"):
                    _add(errors_by_route, route, value)
            elif name == "agentgateway_request_duration_seconds" and sample.name.endswith("_bucket"):
                bound = math.inf if labels.get("le") == "+Inf" else float(labels.get("le", "inf"))
                for route in (labels.get("route") or NO_ROUTE, ALL_ROUTES):
                    per_bound = buckets.setdefault(route, {})
                    per_bound[bound] = per_bound.get(bound, 0.0) + value
            elif name == "agentgateway_gen_ai_client_token_usage" and sample.name.endswith("_sum"):
                model = labels.get("gen_ai_request_model") or labels.get("gen_ai_response_model") or "?"
                _add(totals["tokensByModel"], f"{model} ({labels.get('gen_ai_token_type', '?')})", value)
                _add(totals["tokensByRoute"], labels.get("route", ""), value)
            elif name == "agentgateway_mcp_requests" and sample.name.endswith("_total"):
                mcp_routes.add(labels.get("route", ""))
                _add(totals["mcpCalls"], labels.get("tool") or labels.get("method", "?"), value)
            elif name == "agentgateway_a2a_requests" and sample.name.endswith("_total"):
                _add(totals["a2aCalls"], labels.get("method", "?"), value)
            elif (
                name == "agentgateway_rate_limit_decisions"
                and sample.name.endswith("_total")
                and labels.get("result") == "limited"
            ):
                _add(totals["rateLimited"], labels.get("route", ""), value)
    for route in mcp_routes:
        if route in errors_by_route:
            totals["mcpErrors"][route] = errors_by_route[route]
    return totals, {route: sorted(per.items()) for route, per in buckets.items()}


def percentile(bounds: list[tuple[float, float]], q: float) -> float | None:
    """The ``q`` quantile of a histogram given as (upper bound, count in the interval, not
    cumulative) pairs sorted by bound, interpolated linearly inside its bucket (as Prometheus'
    histogram_quantile); None without observations."""
    total = sum(count for _, count in bounds)
    if total <= 0:
        return None
    rank = q * total
    seen = 0.0
    lower = 0.0
    for bound, count in bounds:
        if count > 0 and seen + count >= rank:
            if math.isinf(bound):
                return lower  # past the last finite bound: the best that can be said
            return lower + (bound - lower) * (rank - seen) / count
        seen += count
        if not math.isinf(bound):
            lower = bound
    return lower


def _capped(values: dict[str, float]) -> dict[str, float]:
    """At most ``MAX_KEYS`` keys: the largest, the rest summed as ``other``."""
    if len(values) <= MAX_KEYS:
        return values
    ranked = sorted(values.items(), key=lambda kv: kv[1], reverse=True)
    kept = dict(ranked[: MAX_KEYS - 1])
    kept[OTHER] = sum(v for _, v in ranked[MAX_KEYS - 1 :])
    return kept


class Sample:
    __slots__ = ("at", "rates", "latency")

    def __init__(self, at: float, rates: dict[str, dict[str, float]], latency: dict[str, list[float]]) -> None:
        self.at = at
        self.rates = rates  # chart → key → per second (keys that moved only)
        self.latency = latency  # route → [p50, p90, p99] in ms (routes with requests only)


class TrafficHistory:
    """A ring of samples covering the last ``KEEP_SECONDS``."""

    def __init__(self, period: float = SAMPLE_PERIOD, keep: float = KEEP_SECONDS) -> None:
        self.period = period
        self.samples: deque[Sample] = deque(maxlen=int(keep / period) + 1)
        self._last: tuple[float, Totals, Buckets] | None = None

    def begin(self, at: float) -> None:
        """The counters' zero: the moment the workers started counting. Without it the first
        sample is only a baseline, and the traffic of the first ``period`` after startup is
        never shown."""
        self._last = (at, {name: {} for name in CHARTS if name != "latency"}, {})

    def add(self, at: float, families: Iterable[Metric]) -> None:
        totals, buckets = _reduce(families)
        last = self._last
        self._last = (at, totals, buckets)
        if last is None:
            return
        since, before, buckets_before = last
        elapsed = at - since
        if elapsed <= 0:
            return
        rates: dict[str, dict[str, float]] = {}
        for chart, values in totals.items():
            previous = before.get(chart, {})
            moved = {k: (v - previous.get(k, 0.0)) / elapsed for k, v in values.items()}
            moved = {k: round(v, 4) for k, v in moved.items() if v > 0}  # counters never go down; a reset is no traffic
            if moved:
                rates[chart] = _capped(moved)
        latency: dict[str, list[float]] = {}
        for route, now_bounds in buckets.items():
            old = dict(buckets_before.get(route, ()))
            cumulative = [(bound, count - old.get(bound, 0.0)) for bound, count in now_bounds]
            interval = []
            prev = 0.0
            for bound, count in cumulative:
                interval.append((bound, max(count - prev, 0.0)))
                prev = count
            points = [percentile(interval, q) for q in PERCENTILES]
            if points[0] is not None:
                latency[route] = [round((p or 0.0) * 1000.0, 3) for p in points]
        if len(latency) > MAX_KEYS:
            busiest = sorted(rates.get("requests", {}).items(), key=lambda kv: kv[1], reverse=True)
            keep = {ALL_ROUTES, *(route for route, _ in busiest[: MAX_KEYS - 1])}
            latency = {k: v for k, v in latency.items() if k in keep}
        self.samples.append(Sample(at, rates, latency))

    def series(self, window: float = KEEP_SECONDS, now: float | None = None) -> dict[str, Any]:
        """The samples of the last ``window`` seconds as aligned series per chart (the page's JSON)."""
        samples = list(self.samples)
        if now is not None:
            samples = [s for s in samples if s.at >= now - window]
        times = [round(s.at, 3) for s in samples]
        charts: dict[str, Any] = {}
        for chart, (title, unit) in CHARTS.items():
            if chart == "latency":
                routes = sorted({route for s in samples for route in s.latency})
                per_route = {
                    route: {
                        f"p{round(q * 100):d}": [s.latency[route][i] if route in s.latency else None for s in samples]
                        for i, q in enumerate(PERCENTILES)
                    }
                    for route in routes
                }
                charts[chart] = {"title": title, "unit": unit, "routes": per_route}
                continue
            keys = sorted({k for s in samples for k in s.rates.get(chart, {})})
            series = {k: [s.rates.get(chart, {}).get(k, 0.0) for s in samples] for k in keys}
            charts[chart] = {"title": title, "unit": unit, "series": series}
        return {"period": self.period, "window": window, "times": times, "charts": charts}
