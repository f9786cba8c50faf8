"""The ``mcp`` scenario's samples and summary: rows over rounds, tables, verdicts, its RESULTS.md section."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from benchmarks.report import DASH, Spread, markdown_table, median_cell, percent_cell, range_cell, spread_of
from benchmarks.wrk import WrkResult

NAME = "mcp"

# tools/call targets, in the order of every round and of the tables.
DIRECT = "direct"
GATEWAY = "gateway"
GATEWAY_JSON = "gateway-json"
# The gateway with every connection on ONE MCP session (the calls of one client, in parallel).
GATEWAY_ONE_SESSION = "gateway-one-session"
CONTEXTFORGE = "contextforge"
CONTEXTFORGE_STATEFUL = "contextforge-stateful"
MCP_PROXY = "mcp-proxy"
TARGETS = (DIRECT, GATEWAY, GATEWAY_JSON, GATEWAY_ONE_SESSION, CONTEXTFORGE, CONTEXTFORGE_STATEFUL, MCP_PROXY)
CONTEXTFORGES = (CONTEXTFORGE, CONTEXTFORGE_STATEFUL)
# tools/list runs of the fan-out (c=1 only): one upstream target straight, and the gateway over ten.
LIST_DIRECT = "list-direct"
LIST_GATEWAY = "list-gateway"
LIST_TARGETS = (LIST_DIRECT, LIST_GATEWAY)
ORDER = TARGETS + LIST_TARGETS

PINNED = "pinned"
ONE_CORE = "one-core"
LATENCY_CONNECTIONS = 1
SATURATION_CONNECTIONS = 32

# The goals.
ADDED_P50_BUDGET_US = 200.0  # tools/call through the gateway at c=1, over direct
MERGE_BUDGET_US = 1000.0  # the native merge of 10 results × 50 tools
CONTEXTFORGE_RATIO_GOAL = 10.0  # gateway req/s at c=32 over ContextForge's


@dataclass(frozen=True)
class Sample:
    """One measured wrk run, the CPU each side used meanwhile, and what reached the upstream."""

    target: str
    layout: str
    connections: int
    round: int
    wrk: WrkResult  # errors include answers without the expected result
    bad_answers: int
    proxy_cpu_s: float | None  # the proxy's process tree; None for direct
    proxy_user_s: float | None
    load_cpu_s: float  # wrk and the upstream
    other_cpu_s: float  # everything else on the machine (noise)
    upstream_sessions: int  # MCP sessions the upstream opened during the run
    upstream_connections: int  # TCP connections the upstream accepted during the run
    attempts: int

    @property
    def other_cpu_share(self) -> float:
        return self.other_cpu_s / self.wrk.duration_s if self.wrk.duration_s else 0.0


@dataclass(frozen=True)
class Row:
    target: str
    layout: str
    connections: int
    requests_per_second: Spread
    p50_us: Spread
    p99_us: Spread
    added_p50_us: Spread | None  # paired per round with direct (same c; list-direct for list-gateway)
    added_p99_us: Spread | None
    vs_contextforge: Spread | None  # req/s over the faster ContextForge's, paired per round
    proxy_cpu_us_per_request: Spread | None
    proxy_user_us_per_request: Spread | None
    proxy_cpu_share: Spread | None
    load_cpu_share: Spread
    other_cpu_share: Spread
    upstream_sessions_per_1k: Spread
    upstream_connections_per_1k: Spread
    peak_rss_bytes: int | None
    errors: int


Key = tuple[int, int]  # (round, connections)


def _by_round(samples: Sequence[Sample], target: str, layout: str = PINNED) -> dict[Key, Sample]:
    return {(s.round, s.connections): s for s in samples if s.target == target and s.layout == layout}


def _paired_difference(own: Sequence[Sample], baseline: dict[Key, Sample], field: str) -> Spread | None:
    return Spread.of(
        [
            getattr(s.wrk, field) - getattr(base.wrk, field)
            for s in own
            if (base := baseline.get((s.round, s.connections))) is not None
        ]
    )


def _best_contextforge(samples: Sequence[Sample]) -> dict[Key, float]:
    """Per round and c, the higher req/s of the ContextForge variants."""
    best: dict[Key, float] = {}
    for s in samples:
        if s.target in CONTEXTFORGES and s.layout == PINNED:
            key = (s.round, s.connections)
            best[key] = max(best.get(key, 0.0), s.wrk.requests_per_second)
    return best


def _per_1k(count: int, sample: Sample) -> float:
    return count * 1000 / sample.wrk.requests if sample.wrk.requests else 0.0


def _group_key(group: tuple[str, str, int]) -> tuple[bool, int, int]:
    target, layout, connections = group
    return layout != PINNED, ORDER.index(target), connections


def summarise(samples: Sequence[Sample], peak_rss: dict[str, int]) -> list[Row]:
    direct = _by_round(samples, DIRECT)
    list_direct = _by_round(samples, LIST_DIRECT)
    best_contextforge = _best_contextforge(samples)
    rows: list[Row] = []
    for group in sorted({(s.target, s.layout, s.connections) for s in samples}, key=_group_key):
        target, layout, connections = group
        own = [s for s in samples if (s.target, s.layout, s.connections) == group]
        is_proxy = any(s.proxy_cpu_s is not None for s in own)
        baseline = list_direct if target in LIST_TARGETS else direct
        ratios = [
            s.wrk.requests_per_second / best
            for s in own
            if (best := best_contextforge.get((s.round, s.connections), 0.0)) > 0
        ]
        rows.append(
            Row(
                target=target,
                layout=layout,
                connections=connections,
                requests_per_second=spread_of([s.wrk.requests_per_second for s in own]),
                p50_us=spread_of([s.wrk.p50_us for s in own]),
                p99_us=spread_of([s.wrk.p99_us for s in own]),
                added_p50_us=_paired_difference(own, baseline, "p50_us") if is_proxy else None,
                added_p99_us=_paired_difference(own, baseline, "p99_us") if is_proxy else None,
                vs_contextforge=Spread.of(ratios) if target not in LIST_TARGETS else None,
                proxy_cpu_us_per_request=Spread.of(
                    [s.proxy_cpu_s * 1e6 / s.wrk.requests for s in own if s.proxy_cpu_s is not None and s.wrk.requests]
                ),
                proxy_user_us_per_request=Spread.of(
                    [
                        s.proxy_user_s * 1e6 / s.wrk.requests
                        for s in own
                        if s.proxy_user_s is not None and s.wrk.requests
                    ]
                ),
                proxy_cpu_share=Spread.of(
                    [s.proxy_cpu_s / s.wrk.duration_s for s in own if s.proxy_cpu_s is not None and s.wrk.duration_s]
                ),
                load_cpu_share=spread_of([s.load_cpu_s / s.wrk.duration_s for s in own if s.wrk.duration_s] or [0.0]),
                other_cpu_share=spread_of([s.other_cpu_share for s in own]),
                upstream_sessions_per_1k=spread_of([_per_1k(s.upstream_sessions, s) for s in own]),
                upstream_connections_per_1k=spread_of([_per_1k(s.upstream_connections, s) for s in own]),
                peak_rss_bytes=peak_rss.get(target),
                errors=sum(s.wrk.errors for s in own),
            )
        )
    return rows


# --- cells ------------------------------------------------------------------------------------------


def _latency(spread: Spread | None, signed: bool = False, ranged: bool = False) -> str:
    """µs below 10 ms, ms above (ContextForge's latencies are in the hundreds of ms)."""
    if spread is None:
        return DASH
    if abs(spread.median) >= 10_000:
        scaled = Spread(spread.median / 1000, spread.low / 1000, spread.high / 1000)
        text = range_cell(scaled, ",.0f", signed) if ranged else median_cell(scaled, ",.0f", signed)
        return text.replace(" [", " ms [") if " [" in text else text + " ms"
    return range_cell(spread, ",.0f", signed) if ranged else median_cell(spread, ",.0f", signed)


def _rss(row: Row) -> str:
    return DASH if row.peak_rss_bytes is None else f"{row.peak_rss_bytes / 2**20:.0f}"


def _rate(spread: Spread) -> str:
    return f"{spread.median:,.0f}" if spread.median >= 100 else f"{spread.median:,.1f}"


# --- tables -----------------------------------------------------------------------------------------

MAIN_HEADER = (
    "target", "c", "req/s [min…max]", "p50 µs [min…max]", "p99 µs", "+p50 µs [min…max]", "+p99 µs",
    "× ContextForge", "proxy CPU µs/req", "user µs/req", "proxy core %", "load core %", "other CPU % max",
    "upstream sessions /1k", "upstream conns /1k", "peak RSS MiB", "errors",
)  # fmt: skip


def _main_cells(row: Row) -> list[str]:
    return [
        row.target if row.layout == PINNED else f"{row.target} ({row.layout})",
        str(row.connections),
        range_cell(row.requests_per_second, ",.0f" if row.requests_per_second.median >= 100 else ",.1f"),
        _latency(row.p50_us, ranged=True),
        _latency(row.p99_us),
        _latency(row.added_p50_us, signed=True, ranged=True),
        _latency(row.added_p99_us, signed=True),
        median_cell(row.vs_contextforge, ",.1f"),
        median_cell(row.proxy_cpu_us_per_request, ",.0f"),
        median_cell(row.proxy_user_us_per_request, ",.0f"),
        percent_cell(row.proxy_cpu_share),
        percent_cell(row.load_cpu_share),
        percent_cell(row.other_cpu_share, "high"),
        median_cell(row.upstream_sessions_per_1k, ",.0f"),
        median_cell(row.upstream_connections_per_1k, ",.0f"),
        _rss(row),
        str(row.errors),
    ]


def call_table(rows: Sequence[Row]) -> str:
    return markdown_table(MAIN_HEADER, [_main_cells(row) for row in rows if row.target in TARGETS])


def list_table(rows: Sequence[Row]) -> str | None:
    chosen = [row for row in rows if row.target in LIST_TARGETS]
    if not chosen:
        return None
    header = (
        "target", "c", "req/s", "p50 µs [min…max]", "p99 µs", "+p50 µs over list-direct", "proxy CPU µs/req",
        "other CPU % max", "errors",
    )  # fmt: skip
    cells = [
        [
            row.target,
            str(row.connections),
            _rate(row.requests_per_second),
            _latency(row.p50_us, ranged=True),
            _latency(row.p99_us),
            _latency(row.added_p50_us, signed=True, ranged=True),
            median_cell(row.proxy_cpu_us_per_request, ",.0f"),
            percent_cell(row.other_cpu_share, "high"),
            str(row.errors),
        ]
        for row in chosen
    ]
    return markdown_table(header, cells)


def merge_table(merge: dict[str, Any]) -> str:
    ways = merge["ways"]
    native = ways["native"]["median_us"]
    header = ("merge of 10 × 50 tools", "µs per merge (median) [min…max of batches]", "× native", "MB/s in")
    labels = {
        "native": "native (`agentgateway._native.merge_list_results`)",
        "orjson": "Python + orjson",
        "json": "Python + stdlib json",
    }
    cells = [
        [
            labels.get(name, name),
            f"{way['median_us']:,.0f} [{way['min_us']:,.0f}…{way['max_us']:,.0f}]",
            f"{way['median_us'] / native:.1f}",
            f"{merge['input_bytes'] / way['median_us']:,.0f}",
        ]
        for name, way in ways.items()
    ]
    return markdown_table(header, cells)


def per_round_table(samples: Sequence[Sample], rounds: int) -> str:
    header = ["target", "c", *(f"round {i + 1}: req/s, p50 µs" for i in range(rounds))]
    rows = []
    for group in sorted({(s.target, s.layout, s.connections) for s in samples}, key=_group_key):
        by_round = {s.round: s for s in samples if (s.target, s.layout, s.connections) == group}
        target, layout, connections = group
        label = target if layout == PINNED else f"{target} ({layout})"
        cells = [_round_cell(by_round[i]) if i in by_round else DASH for i in range(rounds)]
        rows.append([label, str(connections), *cells])
    return markdown_table(header, rows)


def _round_cell(sample: Sample) -> str:
    repeated = "*" if sample.attempts > 1 else ""
    rate = sample.wrk.requests_per_second
    return (
        f"{rate:,.0f}, {sample.wrk.p50_us:,.0f}{repeated}" if rate >= 100 else f"{rate:,.1f}, {sample.wrk.p50_us:,.0f}"
    )


# --- verdicts ---------------------------------------------------------------------------------------


def _find(rows: Sequence[Row], target: str, connections: int, layout: str = PINNED) -> Row | None:
    return next((r for r in rows if (r.target, r.connections, r.layout) == (target, connections, layout)), None)


def latency_verdict(rows: Sequence[Row], layout: str = PINNED) -> str:
    where = "" if layout == PINNED else ", gateway on the load core (no cross-core wake-ups)"
    goal = f"Added p50 of tools/call at c={LATENCY_CONNECTIONS} ≤ {ADDED_P50_BUDGET_US:.0f} µs over direct{where}"
    gateway = _find(rows, GATEWAY, LATENCY_CONNECTIONS, layout)
    direct = _find(rows, DIRECT, LATENCY_CONNECTIONS)
    if gateway is None or direct is None or gateway.added_p50_us is None:
        return f"{goal}: not measured in this run"
    added = gateway.added_p50_us
    met = "met" if added.median <= ADDED_P50_BUDGET_US else "not met"
    others = ", ".join(
        f"{row.target} {_latency(row.added_p50_us, signed=True)} µs".replace(" ms µs", " ms")
        for row in rows
        if row.layout == layout
        and row.connections == LATENCY_CONNECTIONS
        and row.added_p50_us is not None
        and row.target in TARGETS
    )
    return (
        f"{goal}: **{met}** — gateway p50 {gateway.p50_us.median:.0f} µs, direct {direct.p50_us.median:.0f} µs, "
        f"added {added.median:+.0f} µs (rounds {added.low:+.0f}…{added.high:+.0f}); all: {others}"
    )


def throughput_verdict(rows: Sequence[Row]) -> str:
    goal = f"Throughput of tools/call at c={SATURATION_CONNECTIONS} ≥ {CONTEXTFORGE_RATIO_GOAL:.0f}× ContextForge"
    gateway = _find(rows, GATEWAY, SATURATION_CONNECTIONS)
    peers = [row for name in CONTEXTFORGES if (row := _find(rows, name, SATURATION_CONNECTIONS)) is not None]
    if gateway is None or not peers or gateway.vs_contextforge is None:
        return f"{goal}: not measured in this run"
    ratio = gateway.vs_contextforge
    met = "met" if ratio.median >= CONTEXTFORGE_RATIO_GOAL else "not met"
    listed = ", ".join(f"{row.target} {_rate(row.requests_per_second)} req/s" for row in peers)
    return (
        f"{goal}: **{met}** — gateway {gateway.requests_per_second.median:,.0f} req/s; {listed}; ratio to the "
        f"faster ContextForge {ratio.median:,.0f}× (rounds {ratio.low:,.0f}…{ratio.high:,.0f})"
    )


def merge_verdict(merge: dict[str, Any] | None) -> str:
    goal = f"Merge of 500 tools (10 targets × 50) ≤ {MERGE_BUDGET_US / 1000:.0f} ms"
    if merge is None:
        return f"{goal}: not measured in this run"
    native = merge["ways"]["native"]["median_us"]
    met = "met" if native <= MERGE_BUDGET_US else "not met"
    orjson_us = merge["ways"]["orjson"]["median_us"]
    return (
        f"{goal}: **{met}** — native merge {native:,.0f} µs per merge (median of {merge['batches']} batches), "
        f"{orjson_us / native:.1f}× faster than the same merge in Python with orjson ({orjson_us:,.0f} µs)"
    )


def fanout_observation(rows: Sequence[Row]) -> str | None:
    listed = _find(rows, LIST_GATEWAY, LATENCY_CONNECTIONS)
    direct = _find(rows, LIST_DIRECT, LATENCY_CONNECTIONS)
    if listed is None:
        return None
    base = f", one target straight from the upstream {direct.p50_us.median:,.0f} µs" if direct else ""
    return (
        f"tools/list through the gateway over {10} targets × 50 tools (500 tools, about 300 KB): p50 "
        f"{listed.p50_us.median:,.0f} µs end to end at c=1{base}."
    )


def repeats_note(samples: Sequence[Sample], max_other_share: float) -> str | None:
    repeated = [s for s in samples if s.attempts > 1]
    if not repeated:
        return None
    return (
        f"{len(repeated)} of {len(samples)} measured runs were repeated (marked * per round) because other "
        f"processes used more than {max_other_share:.0%} of a core while they ran."
    )


# --- the section ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    command: str
    started: datetime.datetime
    machine: str
    versions: str
    peers: list[str]  # one line per peer: version, install, config
    pinning: str
    load: str
    skipped: list[str]  # targets that could not run, and why


LEGEND = """\
Columns: *req/s* wrk's count of answered calls over its measured time; *p50/p99* wrk's latency
percentiles (µs unless marked ms); *+p50/+p99* the target's percentile minus direct's at the same c
in the same round (for list-gateway: minus list-direct's); *× ContextForge* req/s over the faster
ContextForge variant's at the same c in the same round; *gateway-one-session* is the gateway with
all c connections sending on one MCP session (as *gateway*, answers as SSE); *proxy CPU µs/req* user+system CPU of the
proxy's whole process tree over the requests it served, *user µs/req* its user-space part; *proxy core
%* and *load core %* how busy each pinned core was (100 = one core; load = wrk + upstream); *other CPU %
max* the most CPU anything else on the machine took during any one round (noise gauge); *upstream
sessions /1k* and *upstream conns /1k* MCP sessions the upstream opened and TCP connections it accepted
per 1000 calls (0 for a proxy that keeps both alive); *peak RSS* the sum of VmHWM over the proxy's
processes; *errors* wrk's socket errors, HTTP ≥ 400, and answers without the tool's result, over all
measured runs."""


def section(
    facts: RunFacts,
    rows: Sequence[Row],
    samples: Sequence[Sample],
    merge: dict[str, Any] | None,
    rounds: int,
    max_other_share: float,
) -> str:
    lists = list_table(rows)
    notes = [fanout_observation(rows), repeats_note(samples, max_other_share)]
    has_one_core = any(row.layout == ONE_CORE for row in rows)
    parts = [
        f"## {NAME} — MCP tools/call and tools/list fan-out",
        "",
        "MCP `tools/call` (a small echo tool, streamable HTTP) through the gateway (1 worker, one MCP "
        "target) next to direct (client → upstream), ContextForge (`mcp-contextforge-gateway`) and "
        "`mcp-proxy`, all in front of the same upstream: `benchmarks/mcp_upstream.py`, a purpose-built "
        "uvloop + httptools MCP server answering JSON (checked with the official `mcp` client), fast "
        "enough never to be the bottleneck. Then `tools/list` over 10 targets × 50 tools through the "
        "gateway, and the merge of those 500 tools alone.",
        "",
        f"- Command: `{facts.command}`",
        f"- Date: {facts.started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {facts.machine}",
        f"- Versions: {facts.versions}",
        *(f"- {line}" for line in facts.peers),
        f"- Pinning: {facts.pinning}",
        f"- Load: {facts.load}",
        *(f"- Not measured: {line}" for line in facts.skipped),
        "",
        call_table(rows),
        "",
        f"- {latency_verdict(rows)}",
        *([f"- {latency_verdict(rows, ONE_CORE)}"] if has_one_core else []),
        f"- {throughput_verdict(rows)}",
        f"- {merge_verdict(merge)}",
        *(f"- {note}" for note in notes if note),
        "",
        LEGEND,
    ]
    if lists is not None:
        parts += [
            "",
            "`tools/list` at c=1: *list-direct* asks one upstream target for its 50 tools; *list-gateway* "
            "asks the gateway, which asks its 10 targets concurrently (all served by the one upstream "
            "process, which answers them one after the other) and merges 500 tools:",
            "",
            lists,
        ]
    if merge is not None:
        parts += [
            "",
            f"The merge alone (`python -m benchmarks.mcp_merge`, pinned to the proxy's core): 10 raw results "
            f"of 50 tools, {merge['input_bytes']:,} bytes in, {merge['output_bytes']:,} bytes out, names "
            "prefixed with their target; the three ways give the same object, timed in interleaved batches:",
            "",
            merge_table(merge),
        ]
    parts += ["", "Per round (req/s, p50 µs), to judge the noise:", "", per_round_table(samples, rounds)]
    return "\n".join(parts) + "\n"
