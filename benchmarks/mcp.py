"""Scenario ``mcp``: MCP ``tools/call`` through the gateway, next to direct, ContextForge and mcp-proxy,
and the ``tools/list`` fan-out over 10 targets × 50 tools.

The layout is the ``http`` scenario's: the proxy under test alone on one CPU, wrk and the upstream on
the other; targets interleaved round after round; a run during which other processes were busy is
repeated. Every target fronts the same upstream (``benchmarks.mcp_upstream``). The harness opens the
MCP sessions itself (``initialize`` + ``notifications/initialized``) and hands them to wrk, which then
sends ``tools/call`` requests with those session ids and checks every answer for the tool's result.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import resource
import shutil
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import mcp_servers, procs, tools
from benchmarks.http import check_pinning, moved_to
from benchmarks.mcp_client import ACCEPT_BOTH, JSON_ONLY, McpSession, upstream_stats
from benchmarks.mcp_load import McpRequest, run_load, write_script
from benchmarks.mcp_report import (
    CONTEXTFORGE,
    CONTEXTFORGE_STATEFUL,
    CONTEXTFORGES,
    DIRECT,
    GATEWAY,
    GATEWAY_JSON,
    GATEWAY_ONE_SESSION,
    LATENCY_CONNECTIONS,
    LIST_DIRECT,
    LIST_GATEWAY,
    MCP_PROXY,
    NAME,
    ONE_CORE,
    PINNED,
    SATURATION_CONNECTIONS,
    TARGETS,
    RunFacts,
    Sample,
    section,
    summarise,
)
from benchmarks.mcp_servers import FANOUT_TARGETS, FANOUT_TOOLS, HOST, Ports
from benchmarks.mcp_upstream import fanout_tools
from benchmarks.report import write_section
from benchmarks.scenario import RunOptions, Scenario, add_run_options, run_options

DEFAULT_BASE_PORT = 18180
NOISE_SHOWN_SHARE = 0.02
ECHO_TEXT = "mcp-bench-ok"
PEER_OF = {CONTEXTFORGE: "contextforge", CONTEXTFORGE_STATEFUL: "contextforge", MCP_PROXY: "mcp-proxy"}
MERGE_SECONDS = 5.0

# --- options ----------------------------------------------------------------------------------------


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if not names or any(name not in TARGETS for name in names):
        raise argparse.ArgumentTypeError(f"targets are a comma list of {', '.join(TARGETS)}")
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
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT, default_duration=8, default_warmup=2)
    parser.add_argument(
        "--targets",
        type=_name_list,
        default=None,
        help=f"subset of {','.join(TARGETS)} (all; a peer that is not installed is then left out with a note)",
    )
    parser.add_argument(
        "--concurrency",
        type=_int_list,
        default=(LATENCY_CONNECTIONS, SATURATION_CONNECTIONS),
        help=f"wrk connections for tools/call, comma list ({LATENCY_CONNECTIONS},{SATURATION_CONNECTIONS})",
    )
    parser.add_argument(
        "--no-one-core",
        dest="one_core",
        action="store_false",
        help=f"skip the extra c={LATENCY_CONNECTIONS} run with the gateway moved onto the load core",
    )
    parser.add_argument(
        "--no-fanout",
        dest="fanout",
        action="store_false",
        help=f"skip tools/list over {FANOUT_TARGETS} targets × {FANOUT_TOOLS} tools and the merge timing",
    )


# --- targets ----------------------------------------------------------------------------------------


@dataclass
class Target:
    """What wrk is pointed at: a port and an MCP request, with sessions opened beforehand."""

    name: str
    port: int
    path: str
    method: str
    params: dict[str, Any]
    expect: str
    accept: str
    headers: dict[str, str]
    process: procs.ManagedProcess | None  # None: nothing between wrk and the upstream
    sessions: list[str] = dataclasses.field(default_factory=list)
    one_session: bool = False  # every connection sends on the same session

    def request(self, connections: int) -> McpRequest:
        return McpRequest(
            path=self.path,
            method=self.method,
            params=self.params,
            sessions=self.sessions[: 1 if self.one_session else connections],
            headers={"Content-Type": "application/json", "Accept": self.accept, **self.headers},
            expect=self.expect,
        )

    def session(self) -> McpSession:
        return McpSession(HOST, self.port, self.path, accept=self.accept, extra_headers=self.headers)

    def open_sessions(self, count: int) -> None:
        """``count`` sessions, each checked with one request (which also lets a proxy set up its
        upstream session for it before anything is measured)."""
        while len(self.sessions) < count:
            with self.session() as session:
                session.open()
                self.check(session)
                if session.session_id is None:
                    return  # a stateless server: requests carry no session
                self.sessions.append(session.session_id)

    def check(self, session: McpSession) -> None:
        result = session.request(self.method, self.params)
        if self.expect not in json.dumps(result, separators=(",", ":")):
            raise procs.BenchmarkError(f"{self.name}: {self.method} answered without {self.expect}: {result!r:.300}")


def _call(
    name: str,
    port: int,
    path: str,
    tool: str,
    process: procs.ManagedProcess | None,
    *,
    accept: str = ACCEPT_BOTH,
    headers: dict[str, str] | None = None,
) -> Target:
    return Target(
        name=name,
        port=port,
        path=path,
        method="tools/call",
        params={"name": tool, "arguments": {"text": ECHO_TEXT}},
        expect=f'"text":"{ECHO_TEXT}"',
        accept=accept,
        headers=headers or {},
        process=process,
    )


def _list(name: str, port: int, path: str, last_tool: str, process: procs.ManagedProcess | None) -> Target:
    return Target(
        name=name,
        port=port,
        path=path,
        method="tools/list",
        params={},
        expect=f'"name":"{last_tool}"',
        accept=ACCEPT_BOTH,
        headers={},
        process=process,
    )


def available_targets(requested: tuple[str, ...] | None) -> tuple[tuple[str, ...], list[str]]:
    """The targets to run, and a note for each default one left out because its peer is missing."""
    names = requested if requested is not None else TARGETS
    skipped: list[str] = []
    kept: list[str] = []
    for name in names:
        peer = PEER_OF.get(name)
        if peer is not None and not mcp_servers.peer_installed(peer):
            if requested is not None:
                mcp_servers.peer_executable(peer, "python")  # raises with the hint
            skipped.append(f"{name}: {peer} is not installed here ({mcp_servers.PEERS_HINT})")
            continue
        kept.append(name)
    return tuple(kept), skipped


def ports_needed(names: Sequence[str], ports: Ports, fanout: bool) -> list[int]:
    needed = [ports.upstream]
    if GATEWAY in names or GATEWAY_JSON in names or GATEWAY_ONE_SESSION in names:
        needed += [ports.gateway, ports.gateway_stats, ports.gateway_readiness]
    if fanout:
        needed += [ports.fanout, ports.fanout_stats, ports.fanout_readiness]
    if CONTEXTFORGE in names:
        needed.append(ports.contextforge)
    if CONTEXTFORGE_STATEFUL in names:
        needed.append(ports.contextforge_stateful)
    if MCP_PROXY in names:
        needed.append(ports.mcp_proxy)
    return needed


def start_targets(
    processes: procs.ProcessSet, names: Sequence[str], ports: Ports, options: RunOptions, fanout: bool
) -> tuple[procs.ManagedProcess, list[Target]]:
    cpu = options.proxy_cpu
    upstream = mcp_servers.start_upstream(processes, port=ports.upstream, cpu=options.load_cpu)
    call_url = mcp_servers.upstream_url(ports.upstream)
    tool = mcp_servers.CALL_TOOL
    targets: list[Target] = []
    gateway: procs.ManagedProcess | None = None
    if GATEWAY in names or GATEWAY_JSON in names or GATEWAY_ONE_SESSION in names:
        gateway = mcp_servers.start_gateway(
            processes, "gateway", port=ports.gateway, stats=ports.gateway_stats,
            readiness=ports.gateway_readiness, targets=[("up", call_url)], cpu=cpu,
        )  # fmt: skip
    for name in names:
        if name == DIRECT:
            targets.append(_call(name, ports.upstream, "/mcp", tool, None))
        elif name == GATEWAY:
            targets.append(_call(name, ports.gateway, "/mcp", tool, gateway))
        elif name == GATEWAY_JSON:
            targets.append(_call(name, ports.gateway, "/mcp", tool, gateway, accept=JSON_ONLY))
        elif name == GATEWAY_ONE_SESSION:
            targets.append(dataclasses.replace(_call(name, ports.gateway, "/mcp", tool, gateway), one_session=True))
        elif name in CONTEXTFORGES:
            port = ports.contextforge if name == CONTEXTFORGE else ports.contextforge_stateful
            forge = mcp_servers.start_contextforge(
                processes, name, port=port, upstream=call_url, stateful=name == CONTEXTFORGE_STATEFUL, cpu=cpu
            )
            targets.append(_call(name, port, forge.path, forge.tool, forge.process, headers=forge.headers))
        elif name == MCP_PROXY:
            proxy = mcp_servers.start_mcp_proxy(processes, port=ports.mcp_proxy, upstream=call_url, cpu=cpu)
            targets.append(_call(name, ports.mcp_proxy, "/mcp", tool, proxy))
    if fanout:
        fanout_urls = [(f"t{i}", mcp_servers.upstream_url(ports.upstream, f"/t{i}/mcp")) for i in range(FANOUT_TARGETS)]
        fanout_gateway = mcp_servers.start_gateway(
            processes, "gateway-fanout", port=ports.fanout, stats=ports.fanout_stats,
            readiness=ports.fanout_readiness, targets=fanout_urls, cpu=cpu, check_tool=None,
        )  # fmt: skip
        last = FANOUT_TARGETS - 1
        targets.append(_list(LIST_DIRECT, ports.upstream, "/t0/mcp", fanout_tools(0, FANOUT_TOOLS)[-1]["name"], None))
        last_name = f"t{last}_{fanout_tools(last, FANOUT_TOOLS)[-1]['name']}"
        targets.append(_list(LIST_GATEWAY, ports.fanout, "/mcp", last_name, fanout_gateway))
    return upstream, targets


def check_fanout(target: Target) -> None:
    """The gateway's tools/list over the fan-out targets has every tool, prefixed with its target."""
    with target.session() as session:
        listed = [tool.get("name") for tool in session.open().list_tools()]
    expected = [f"t{i}_{tool['name']}" for i in range(FANOUT_TARGETS) for tool in fanout_tools(i, FANOUT_TOOLS)]
    if sorted(str(name) for name in listed) != sorted(expected):
        raise procs.BenchmarkError(
            f"{target.name}: tools/list gave {len(listed)} tools, expected the {len(expected)} of the upstream"
        )


# --- measuring --------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Bench:
    upstream: procs.ManagedProcess
    upstream_port: int
    wrk: str
    options: RunOptions
    scripts: dict[tuple[str, int], Path]


def _children_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu(process: procs.ManagedProcess | None) -> tuple[float, float]:
    """(user + system, user) seconds of a process tree."""
    if process is None:
        return 0.0, 0.0
    user, system = procs.user_system_seconds(procs.process_tree(process.pid))
    return user + system, user


def measure_once(bench: Bench, target: Target, layout: str, connections: int, round_index: int) -> Sample:
    options = bench.options
    url = f"http://{HOST}:{target.port}{target.path}"
    script = bench.scripts[(target.name, connections)]

    def load(seconds: int, log_path: Path | None) -> Any:
        return run_load(
            bench.wrk, url, connections=connections, seconds=seconds, cpu=options.load_cpu, script=script,
            log_path=log_path,
        )  # fmt: skip

    if options.warmup_s:
        load(options.warmup_s, None)
    log_path = options.work_dir / "wrk" / f"{target.name}-{layout}-c{connections}-round{round_index + 1}.txt"
    stats_before = upstream_stats(HOST, bench.upstream_port)
    busy_before = procs.busy_cpu_seconds()
    proxy_before, proxy_user_before = _tree_cpu(target.process)
    load_before = _tree_cpu(bench.upstream)[0] + _children_cpu_seconds()
    result = load(options.duration_s, log_path)
    load_after = _tree_cpu(bench.upstream)[0] + _children_cpu_seconds()
    proxy_after, proxy_user_after = _tree_cpu(target.process)
    busy_after = procs.busy_cpu_seconds()
    stats_after = upstream_stats(HOST, bench.upstream_port)
    proxy_cpu, load_cpu = proxy_after - proxy_before, load_after - load_before
    if result.bad_answers:
        print(f"    {result.bad_answers} bad answers; the first: {result.first_bad}", file=sys.stderr)
    return Sample(
        target=target.name,
        layout=layout,
        connections=connections,
        round=round_index,
        wrk=result.wrk,
        bad_answers=result.bad_answers,
        proxy_cpu_s=proxy_cpu if target.process else None,
        proxy_user_s=proxy_user_after - proxy_user_before if target.process else None,
        load_cpu_s=load_cpu,
        other_cpu_s=max(0.0, (busy_after - busy_before) - proxy_cpu - load_cpu),
        upstream_sessions=stats_after.get("sessions", 0) - stats_before.get("sessions", 0),
        # Less the connection of the second /stats request itself.
        upstream_connections=max(0, stats_after.get("connections", 0) - stats_before.get("connections", 0) - 1),
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
        f"  round {sample.round + 1}/{rounds}  {sample.target + layout:<32} c={sample.connections:<3} "
        f"{result.requests_per_second:>9,.1f} req/s  p50 {result.p50_us:>9,.0f} µs  p99 {result.p99_us:>9,.0f} µs"
        f"{errors}{noise}",
        file=sys.stderr,
        flush=True,
    )


def plan(targets: Sequence[Target], connections: Sequence[int], one_core: bool) -> list[tuple[Target, str, int]]:
    """One round's runs, in order: each target at each c, list runs at c=1, the gateway's one-core run."""
    runs: list[tuple[Target, str, int]] = []
    for target in targets:
        counts = (LATENCY_CONNECTIONS,) if target.method == "tools/list" else connections
        runs += [(target, PINNED, count) for count in counts]
        if one_core and target.name == GATEWAY:
            runs.append((target, ONE_CORE, LATENCY_CONNECTIONS))
    return runs


def measure_rounds(bench: Bench, runs: Sequence[tuple[Target, str, int]]) -> list[Sample]:
    options = bench.options
    samples: list[Sample] = []
    for round_index in range(options.rounds):
        for target, layout, count in runs:
            if layout == ONE_CORE and target.process is not None:
                with moved_to(target.process, options.load_cpu, home_cpu=options.proxy_cpu):
                    samples.append(measure(bench, target, layout, count, round_index))
            else:
                samples.append(measure(bench, target, layout, count, round_index))
    return samples


def time_merge(options: RunOptions) -> dict[str, Any]:
    """``benchmarks.mcp_merge`` in its own process, pinned to the proxy's core."""
    argv = [sys.executable, "-m", "benchmarks.mcp_merge", "--seconds", str(MERGE_SECONDS)]
    output = procs.run_bounded(procs.pinned(argv, options.proxy_cpu), timeout=MERGE_SECONDS + 60)
    decoded = json.loads(output.strip().splitlines()[-1])
    assert isinstance(decoded, dict)
    (options.work_dir / "merge.json").write_text(json.dumps(decoded, indent=2))
    return decoded


# --- the run ----------------------------------------------------------------------------------------


def peer_lines(names: Sequence[str]) -> list[str]:
    lines: list[str] = []
    if any(name in CONTEXTFORGES for name in names):
        version = mcp_servers.peer_version("contextforge", "mcp-contextforge-gateway")
        deps = ", ".join(
            f"{dist} {mcp_servers.peer_version('contextforge', dist)}"
            for dist in ("mcp", "fastapi", "uvicorn", "uvloop", "httptools", "SQLAlchemy")
        )
        lines.append(
            f"ContextForge: mcp-contextforge-gateway {version} on Python "
            f"{mcp_servers.peer_python_version('contextforge')} ({deps}), in its own venv "
            "(benchmarks/peers/contextforge.txt). Run as its quick start does: `mcpgateway --host 127.0.0.1 "
            "--port P` (uvicorn, one worker, its CLI's default), SQLite in the work directory, JWT auth "
            "on (its default; the load sends a token from its `create_jwt_token`), `LOG_LEVEL=ERROR` (its "
            "default); changed: `RATE_LIMITING_ENABLED=false` (by default 100 MCP requests a minute), "
            "`SSRF_ALLOW_LOCALHOST=true` (the upstream is on 127.0.0.1), fresh strong secrets. The "
            "upstream is registered with `POST /gateways` (transport STREAMABLEHTTP), a virtual server "
            "holds its tools, clients use `/servers/<id>/mcp` (ContextForge names the tool `up-echo`). "
            "*contextforge*: defaults, `USE_STATEFUL_SESSIONS=false`: no client sessions, and each "
            "tools/call opens and closes its own upstream session; *contextforge-stateful*: "
            "`USE_STATEFUL_SESSIONS=true`: one upstream session per client session, reused by its calls."
        )
    if MCP_PROXY in names:
        version = mcp_servers.peer_version("mcp-proxy", "mcp-proxy")
        deps = ", ".join(
            f"{dist} {mcp_servers.peer_version('mcp-proxy', dist)}"
            for dist in ("mcp", "starlette", "uvicorn", "uvloop", "httptools")
        )
        lines.append(
            f"mcp-proxy: {version} on Python {mcp_servers.peer_python_version('mcp-proxy')} ({deps}; "
            "`-` = not installed: uvicorn then runs on asyncio and h11, as pip installs mcp-proxy), in its "
            "own venv (benchmarks/peers/mcp-proxy.txt). It bridges stdio and HTTP: its server mode serves "
            "streamable HTTP and talks stdio to a command; its client mode talks stdio on one side and "
            "streamable HTTP to a server on the other. Fronting an HTTP MCP server with an HTTP endpoint "
            "therefore takes both, chained: `mcp-proxy --port P -- mcp-proxy --transport streamablehttp "
            "http://127.0.0.1:U/mcp` (two processes, `--log-level WARNING`, stateful sessions, its "
            "default). The outer process serves every client session over its one stdio session with "
            "the inner one, which holds one upstream session."
        )
    return lines


def run_facts(
    wrk: str, options: RunOptions, names: Sequence[str], connections: Sequence[int], skipped: list[str]
) -> RunFacts:
    versions = [
        f"gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()})",
        f"Python {tools.python_version()}",
        f"uvloop {tools.package_version('uvloop')}",
        f"httptools {tools.package_version('httptools')}",
        f"upstream and harness client: orjson {tools.package_version('orjson')}",
        tools.wrk_version(wrk),
    ]
    pinning = (
        f"CPU {options.proxy_cpu}: the proxy under test (gateway supervisor + worker; ContextForge's "
        f"uvicorn process and its helper processes; both mcp-proxy processes); CPU {options.load_cpu}: wrk "
        "(1 thread) and the upstream (1 process). Direct is wrk → upstream, both on CPU "
        f"{options.load_cpu}. Affinity checked on every process after start; all proxies run all the time."
    )
    load = (
        f"wrk, 1 thread, keep-alive, a Lua script POSTing JSON-RPC (`Accept: {ACCEPT_BOTH}`, "
        f"`application/json` only for gateway-json) with a new id per request, rotating over c sessions "
        f"opened beforehand, and checking every answer for the tool's result; tools/call at c = "
        f"{', '.join(map(str, connections))}, tools/list at c = 1; per target and c a {options.warmup_s} s "
        f"warm-up, then a {options.duration_s} s measured run; {options.rounds} round(s), targets "
        f"interleaved in each ({', '.join(names)}). Figures are medians over rounds, [min…max] the lowest "
        "and highest round; added latency and × ContextForge are paired per round. A run during which "
        f"other processes used more than {options.max_other_share:.0%} of a core is repeated (at most "
        f"{options.noisy_retries} times)."
    )
    return RunFacts(
        command=options.command,
        started=datetime.datetime.now(datetime.UTC),
        machine=tools.machine_summary(),
        versions=", ".join(versions),
        peers=peer_lines(names),
        pinning=pinning,
        load=load,
        skipped=skipped,
    )


def fresh_work_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    (path / "wrk").mkdir(parents=True)


def _final_checks(targets: Sequence[Target]) -> None:
    """Every target still answers correctly after the load (a proxy that fell over would show here)."""
    for target in targets:
        with target.session() as session:
            session.open()
            target.check(session)


def run(args: argparse.Namespace) -> int:
    options = run_options(args, NAME)
    names, skipped = available_targets(args.targets)
    connections: tuple[int, ...] = args.concurrency
    fanout: bool = args.fanout
    one_core: bool = args.one_core and LATENCY_CONNECTIONS in connections and GATEWAY in names
    tools.find_tool("taskset", hint="install util-linux, which every Debian system has")
    wrk = tools.find_tool("wrk")
    ports = Ports.from_base(options.base_port)
    procs.require_free_ports(ports_needed(names, ports, fanout))
    fresh_work_dir(options.work_dir)
    for note in skipped:
        print(f"warning: not measured: {note}", file=sys.stderr)
    facts = run_facts(wrk, options, names, connections, skipped)

    with procs.ProcessSet(options.work_dir) as processes:
        print(f"{NAME}: starting the upstream and {', '.join(names)}", file=sys.stderr)
        upstream, targets = start_targets(processes, names, ports, options, fanout)
        check_pinning(upstream, options.load_cpu)
        for target in targets:
            if target.process is not None:
                check_pinning(target.process, options.proxy_cpu)
            target.open_sessions(1 if target.one_session else max(connections))
            if target.name == LIST_GATEWAY:
                check_fanout(target)
        scripts = {
            (target.name, count): write_script(
                options.work_dir / f"wrk-{target.name}-c{count}.lua", target.request(count)
            )
            for target in targets
            for count in set(connections) | {LATENCY_CONNECTIONS}
        }
        runs = plan(targets, connections, one_core)
        minutes = options.rounds * len(runs) * (options.duration_s + options.warmup_s) / 60
        print(f"{NAME}: {len(runs) * options.rounds} runs, about {minutes:.1f} min", file=sys.stderr)
        bench = Bench(upstream, ports.upstream, wrk, options, scripts)
        samples = measure_rounds(bench, runs)
        _final_checks(targets)
        peak_rss = {t.name: procs.peak_rss_bytes(procs.process_tree(t.process.pid)) for t in targets if t.process}
        merge = time_merge(options) if fanout else None

    text = section(facts, summarise(samples, peak_rss), samples, merge, options.rounds, options.max_other_share)
    print(text)
    if options.results_path is not None:
        write_section(NAME, text, options.results_path)
        print(f"wrote the {NAME} section of {options.results_path}", file=sys.stderr)
    print(f"configs, server logs and wrk reports: {options.work_dir}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary=(
        "MCP tools/call through the gateway vs direct, ContextForge and mcp-proxy (c=1, c=32); "
        "tools/list fan-out over 10 targets × 50 tools"
    ),
    add_arguments=add_arguments,
    run=run,
)
