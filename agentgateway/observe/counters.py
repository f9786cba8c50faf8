"""Counters of this worker process beyond the request metrics (retries, rate-limit decisions).

One process-wide table: an increment is a dict update. The supervisor asks every worker for a
snapshot on scrape and sums them (``CounterTotals``), keeping the totals of workers that exited.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from prometheus_client.metrics_core import CounterMetricFamily, Metric

from agentgateway.observe.metrics import MAX_SERIES, OVERFLOW

# name (without _total) -> (help, label names)
FAMILIES: dict[str, tuple[str, tuple[str, ...]]] = {
    "agentgateway_retries": (
        "Requests sent again to a backend after a failed attempt (retry policy)",
        ("gateway", "listener", "route", "backend"),
    ),
    "agentgateway_a2a_requests": (
        "A2A calls by method, binding, final task state and error code (JSON-RPC code, REST reason, "
        "or HTTP status of a failure)",
        ("gateway", "listener", "route", "method", "binding", "task_state", "error_code"),
    ),
    "agentgateway_rate_limit_decisions": (
        "Rate-limit checks by policy type and result (allowed, limited, failed_open, failed_closed)",
        ("gateway", "listener", "route", "type", "result"),
    ),
    "agentgateway_mcp_tool_pin_mismatches": (
        "MCP tools whose definition does not match its pin (toolPinning), by what was done: hidden "
        "(left out of a list), flagged (listed with a warning), refused (a call refused)",
        ("backend", "target", "tool", "action"),
    ),
    "agentgateway_downstream_connections": (
        "Connections of TCP and TLS listeners relayed to a backend (or refused), by route and protocol (tcp, tls)",
        ("gateway", "listener", "route", "protocol"),
    ),
    "agentgateway_downstream_received_bytes": (
        "Bytes received from clients of TCP and TLS listeners and relayed to their backends",
        ("gateway", "listener", "route", "protocol"),
    ),
    "agentgateway_downstream_sent_bytes": (
        "Bytes relayed from backends to clients of TCP and TLS listeners",
        ("gateway", "listener", "route", "protocol"),
    ),
    "agentgateway_ext_authz_decisions": (
        "External authorization checks by result (allowed, denied, failed_open, failed_closed)",
        ("gateway", "listener", "route", "result"),
    ),
}


class Counters:
    __slots__ = ("values", "sizes")

    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[str, ...]], float] = {}
        self.sizes: dict[str, int] = {}  # series per family, bounded by MAX_SERIES

    def inc(self, name: str, labels: tuple[str, ...], amount: float = 1.0) -> None:
        key = (name, labels)
        values = self.values
        have = values.get(key)
        if have is None:
            size = self.sizes.get(name, 0)
            if size >= MAX_SERIES:
                key = (name, (OVERFLOW,) * len(labels))
                have = values.get(key)
            else:
                self.sizes[name] = size + 1
        values[key] = (have or 0.0) + amount

    def snapshot(self) -> list[list[object]]:
        return [[name, list(labels), value] for (name, labels), value in self.values.items()]


COUNTERS = Counters()


class CounterTotals:
    """Sum of worker snapshots; totals of workers that exited are kept."""

    def __init__(self) -> None:
        self.retired: dict[tuple[str, tuple[str, ...]], float] = {}

    @staticmethod
    def _add(into: dict[tuple[str, tuple[str, ...]], float], snapshot: Iterable[list[object]]) -> None:
        for name, labels, value in snapshot:
            key = (str(name), tuple(str(x) for x in labels))  # type: ignore[attr-defined]
            into[key] = into.get(key, 0.0) + float(value)  # type: ignore[arg-type]

    def retire(self, snapshot: Iterable[list[object]]) -> None:
        self._add(self.retired, snapshot)

    def families(self, live: Iterable[Iterable[list[object]]]) -> Iterator[Metric]:
        merged = dict(self.retired)
        for snapshot in live:
            self._add(merged, snapshot)
        for name, (text, labels) in FAMILIES.items():
            family = CounterMetricFamily(name, text, labels=labels)
            for (n, values), value in sorted(merged.items()):
                if n == name:
                    family.add_metric(list(values), value)
            yield family
