"""What the HTTP/2 scenarios (``http2``, ``grpc``) share: targets started side by side, h2load runs
interleaved round after round with the CPU each side used, and the report with its goals.

Layout as the ``http`` scenario: the proxy under test alone on one CPU, the load generator and the
upstream on the other; a run during which other processes were busy is repeated (bounded)."""

from __future__ import annotations

import dataclasses
import datetime
import resource
import shutil
import socket
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procs, tools
from benchmarks.h2load import H2loadResult, h2load_version, run_h2load
from benchmarks.report import markdown_table, write_section
from benchmarks.scenario import RunOptions

HOST = "127.0.0.1"
# (connections, concurrent streams per connection): one request at a time for latency, and 32
# streams over 4 connections for throughput (the "c=32 streams over a few connections").
LATENCY = (1, 1)
SATURATION = (4, 8)


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    process: procs.ManagedProcess | None  # None for direct


@dataclass(frozen=True)
class Load:
    """What h2load sends: a path, and for gRPC a request body file and headers."""

    path: str
    data_file: Path | None = None
    headers: tuple[str, ...] = ()


@dataclass(frozen=True)
class Sample:
    target: str
    connections: int
    streams: int
    round: int
    result: H2loadResult
    proxy_cpu_s: float | None
    other_cpu_s: float
    attempts: int

    @property
    def other_cpu_share(self) -> float:
        return self.other_cpu_s / self.result.duration_s if self.result.duration_s else 0.0

    @property
    def shape(self) -> str:
        return f"{self.connections}×{self.streams}"


def fresh_work_dir(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
    (path / "h2load").mkdir(parents=True)


def _tree_cpu(process: procs.ManagedProcess | None) -> float:
    return procs.cpu_seconds(procs.process_tree(process.pid)) if process else 0.0


def _children_cpu() -> float:
    """CPU of reaped children: h2load is the only child that exits while a run is measured."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_once(
    h2load: str,
    upstream: procs.ManagedProcess,
    target: Target,
    load: Load,
    shape: tuple[int, int],
    round_index: int,
    options: RunOptions,
) -> Sample:
    connections, streams = shape
    log_path = options.work_dir / "h2load" / f"{target.name}-{connections}x{streams}-round{round_index + 1}.log"
    busy_before = procs.busy_cpu_seconds()
    proxy_before = _tree_cpu(target.process)
    load_before = _tree_cpu(upstream) + _children_cpu()
    result = run_h2load(
        h2load,
        f"http://{HOST}:{target.port}{load.path}",
        connections=connections,
        streams=streams,
        seconds=options.duration_s,
        warmup_s=options.warmup_s,
        cpu=options.load_cpu,
        log_path=log_path,
        data_file=load.data_file,
        headers=load.headers,
    )
    load_cpu = _tree_cpu(upstream) + _children_cpu() - load_before
    proxy_cpu = _tree_cpu(target.process) - proxy_before
    busy = procs.busy_cpu_seconds() - busy_before
    # Tick-sampled counters: a small negative difference is rounding, not time. The warm-up is
    # inside the window measured here: the share is of the whole window.
    total_s = result.duration_s + options.warmup_s
    other = max(0.0, busy - proxy_cpu - load_cpu)
    return Sample(
        target=target.name,
        connections=connections,
        streams=streams,
        round=round_index,
        result=result,
        proxy_cpu_s=proxy_cpu if target.process else None,
        other_cpu_s=other * result.duration_s / total_s if total_s else 0.0,
        attempts=1,
    )


def _progress(sample: Sample, rounds: int) -> None:
    r = sample.result
    errors = f", {r.errors} errors" if r.errors else ""
    print(
        f"  round {sample.round + 1}/{rounds}  {sample.target:<8} {sample.shape:<5} "
        f"{r.requests_per_second:>9,.0f} req/s  p50 {r.p50_us:>6.0f} µs  p99 {r.p99_us:>6.0f} µs{errors}",
        file=sys.stderr,
        flush=True,
    )


def measure_rounds(
    h2load: str, upstream: procs.ManagedProcess, targets: Sequence[Target], load: Load, options: RunOptions
) -> list[Sample]:
    samples = []
    for round_index in range(options.rounds):
        for target in targets:
            for shape in (LATENCY, SATURATION):
                sample, attempts = procs.measure_quietly(
                    lambda t=target, s=shape, r=round_index: measure_once(h2load, upstream, t, load, s, r, options),
                    lambda s: _progress(s, options.rounds),
                    options.max_other_share,
                    options.noisy_retries,
                )
                samples.append(dataclasses.replace(sample, attempts=attempts))
    return samples


# --- report -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Goals:
    throughput_peer: str  # the proxy the gateway's throughput is measured against
    throughput_ratio: float | None  # at SATURATION, gateway / peer; None: reported, no goal
    added_p50_us: float | None  # at LATENCY, gateway over direct; None: reported, no goal


def _median(values: Sequence[float]) -> float:
    return statistics.median(values) if values else 0.0


def _cells(samples: Sequence[Sample], pick: Callable[[Sample], float], fmt: str) -> str:
    values = [pick(s) for s in samples]
    if not values:
        return "—"
    if len(values) == 1:
        return format(values[0], fmt)
    return f"{format(_median(values), fmt)} [{format(min(values), fmt)}…{format(max(values), fmt)}]"


def section(
    name: str,
    title: str,
    facts: Sequence[str],
    samples: Sequence[Sample],
    targets: Sequence[str],
    goals: Goals,
) -> str:
    def of(target: str, shape: tuple[int, int]) -> list[Sample]:
        return [s for s in samples if s.target == target and (s.connections, s.streams) == shape]

    def direct_p50(round_index: int, shape: tuple[int, int]) -> float | None:
        found = [s for s in of("direct", shape) if s.round == round_index]
        return found[0].result.p50_us if found else None

    rows = []
    for target in targets:
        for shape in (LATENCY, SATURATION):
            runs = of(target, shape)
            if not runs:
                continue
            added = [s.result.p50_us - base for s in runs if (base := direct_p50(s.round, shape)) is not None]
            peer = {s.round: s.result.requests_per_second for s in of(goals.throughput_peer, shape)}
            ratio = [s.result.requests_per_second / peer[s.round] for s in runs if peer.get(s.round)]
            cpu = [s.proxy_cpu_s / max(1, s.result.succeeded) * 1e6 for s in runs if s.proxy_cpu_s is not None]
            rows.append(
                [
                    target,
                    f"{shape[0]}×{shape[1]}",
                    _cells(runs, lambda s: s.result.requests_per_second, ",.0f"),
                    _cells(runs, lambda s: s.result.p50_us, ".0f"),
                    format(_median([s.result.p99_us for s in runs]), ".0f"),
                    "—" if target == "direct" or not added else f"{_median(added):+.0f}",
                    f"{_median(ratio):.2f}" if ratio else "—",
                    f"{_median(cpu):.1f}" if cpu else "—",
                    f"{max(s.other_cpu_share for s in runs) * 100:.0f}",
                    str(sum(s.result.errors for s in runs)),
                ]
            )
    header = [
        "target",
        "conns×streams",
        "req/s [min…max]",
        "p50 µs [min…max]",
        "p99 µs",
        "+p50 µs",
        f"× {goals.throughput_peer}",
        "proxy CPU µs/req",
        "other CPU % max",
        "errors",
    ]
    lines = [f"## {name}", "", title, ""]
    lines += [f"- {fact}" for fact in facts]
    lines += ["", markdown_table(header, rows), ""]
    lines += _goal_lines(samples, goals, of, direct_p50)
    return "\n".join(lines) + "\n"


def _goal_lines(
    samples: Sequence[Sample],
    goals: Goals,
    of: Callable[[str, tuple[int, int]], list[Sample]],
    direct_p50: Callable[[int, tuple[int, int]], float | None],
) -> list[str]:
    out = []
    gateway = {s.round: s.result.requests_per_second for s in of("gateway", SATURATION)}
    peer = {s.round: s.result.requests_per_second for s in of(goals.throughput_peer, SATURATION)}
    ratios = [gateway[r] / peer[r] for r in gateway if peer.get(r)]
    if ratios:
        verdict = ""
        if goals.throughput_ratio is not None:
            met = _median(ratios) >= goals.throughput_ratio
            verdict = f" ≥ {goals.throughput_ratio}× {goals.throughput_peer}: **{'met' if met else 'not met'}** —"
        out.append(
            f"- Throughput at {SATURATION[0]}×{SATURATION[1]}{verdict} gateway {_median(list(gateway.values())):,.0f} "
            f"req/s, {goals.throughput_peer} {_median(list(peer.values())):,.0f} req/s, ratio {_median(ratios):.2f} "
            f"(rounds {min(ratios):.2f}…{max(ratios):.2f})"
        )
    added = [
        s.result.p50_us - base for s in of("gateway", LATENCY) if (base := direct_p50(s.round, LATENCY)) is not None
    ]
    if added:
        verdict = ""
        if goals.added_p50_us is not None:
            met = _median(added) <= goals.added_p50_us
            verdict = f" ≤ {goals.added_p50_us:.0f} µs: **{'met' if met else 'not met'}** —"
        out.append(
            f"- Added p50 at {LATENCY[0]}×{LATENCY[1]} over direct{verdict} +{_median(added):.0f} µs "
            f"(rounds +{min(added):.0f}…+{max(added):.0f})"
        )
    cpu = [s.proxy_cpu_s / max(1, s.result.succeeded) * 1e6 for s in of("gateway", SATURATION) if s.proxy_cpu_s]
    if cpu:
        per_core = 1e6 / _median(cpu)
        out.append(
            f"- Gateway CPU per request at {SATURATION[0]}×{SATURATION[1]}: {_median(cpu):.1f} µs "
            f"(≤ {per_core:,.0f} req/s on one core)"
        )
    return out


def run_facts(h2load: str, options: RunOptions, names: Sequence[str], extra_versions: Sequence[str]) -> list[str]:
    versions = [
        f"gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()})",
        f"Python {tools.python_version()}",
        f"ngh2 {tools.package_version('ngh2')}",
        *extra_versions,
        h2load_version(h2load),
    ]
    return [
        f"Command: `{options.command}`; started {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"Machine: {tools.machine_summary()}",
        f"Versions: {', '.join(versions)}",
        f"Pinning: CPU {options.proxy_cpu}: the proxy under test (one worker each); CPU {options.load_cpu}: "
        "h2load (1 thread) and the upstream (nginx, 1 worker). Direct is h2load → upstream.",
        f"Load: h2load, {LATENCY[0]} connection × {LATENCY[1]} stream and {SATURATION[0]} connections × "
        f"{SATURATION[1]} streams; per target and shape a {options.warmup_s} s warm-up, then "
        f"{options.duration_s} s measured; {options.rounds} round(s), targets interleaved ({', '.join(names)}). "
        "Figures are medians over rounds, [min…max] the lowest and highest; p50/p99 from h2load's "
        "per-request log; +p50 and the ratio are paired per round.",
    ]


def finish(name: str, text: str, options: RunOptions) -> int:
    print(text)
    if options.results_path is not None:
        write_section(name, text, options.results_path)
        print(f"wrote the {name} section of {options.results_path}", file=sys.stderr)
    print(f"configs, server logs and h2load logs: {options.work_dir}", file=sys.stderr)
    return 0


# --- servers ----------------------------------------------------------------------------------------


def nginx(processes: procs.ProcessSet, binary: str, name: str, servers: str, *, cpu: int) -> procs.ManagedProcess:
    """nginx, one worker, with ``servers`` (server blocks, upstream blocks) in its http block."""
    prefix = processes.log_dir / name
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    tmp = prefix / "tmp"
    conf = prefix / "nginx.conf"
    conf.write_text(
        f"""\
daemon off;
master_process on;
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/logs/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {tmp}/body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
    keepalive_requests 100000000;
    keepalive_timeout 300s;
{servers}}}
"""
    )
    argv = [binary, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")]
    return processes.start(name, argv, cpu=cpu)


def gateway(
    processes: procs.ProcessSet, *, port: int, stats: int, readiness: int, upstream: int, cpu: int
) -> procs.ManagedProcess:
    config = processes.log_dir / "gateway.yaml"
    config.write_text(
        f"""\
config:
  workers: 1
  adminAddr: "off"
  statsAddr: "{HOST}:{stats}"
  readinessAddr: "{HOST}:{readiness}"
  logging: {{level: warn}}
binds:
- port: {port}
  listeners:
  - routes:
    - backends:
      - host: "{HOST}:{upstream}"
"""
    )
    process = processes.start("gateway", [sys.executable, "-m", "agentgateway", "--file", str(config)], cpu=cpu)

    def ready() -> bool:
        status, _ = procs.http_get(HOST, readiness, "/healthz/ready")
        return status == 200

    procs.wait_until(ready, what="readiness", process=process)
    return process


_HCM = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
_ROUTER = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"
_HTTP_OPTIONS = "type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions"


def envoy(
    processes: procs.ProcessSet, binary: str, *, port: int, upstream: int, upstream_http2: bool, cpu: int
) -> procs.ManagedProcess:
    """Envoy, one worker: HTTP/1.1 and HTTP/2 (prior knowledge) from clients, the upstream over
    HTTP/1.1 or HTTP/2; no access log, no admin listener."""
    protocol = (
        f"""
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": {_HTTP_OPTIONS}
        explicit_http_config: {{http2_protocol_options: {{}}}}"""
        if upstream_http2
        else ""
    )
    config = processes.log_dir / "envoy.yaml"
    config.write_text(
        f"""\
static_resources:
  listeners:
  - name: bench
    address: {{socket_address: {{address: {HOST}, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {_HCM}
          stat_prefix: bench
          codec_type: AUTO
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: upstream}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": {_ROUTER}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s{protocol}
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: {HOST}, port_value: {upstream}}}}}
"""
    )
    argv = [binary, "--config-path", str(config), "--concurrency", "1", "--disable-hot-restart", "--log-level", "warn"]
    return processes.start("envoy", argv, cpu=cpu)


def h2_get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, bytes]:
    """One GET over h2c (prior knowledge): (status, body). For readiness checks."""
    from ngh2 import Connection, DataReceived, ResponseReceived, Role

    conn = Connection(Role.CLIENT)
    conn.initiate_connection()
    stream = conn.send_request(
        [(b":method", b"GET"), (b":scheme", b"http"), (b":authority", HOST.encode()), (b":path", path.encode())],
        end_stream=True,
    )
    status, body, done = 0, b"", False
    with socket.create_connection((HOST, port), timeout=timeout) as sock:
        while not done:
            sock.sendall(conn.data_to_send())
            data = sock.recv(65536)
            if not data:
                break
            conn.receive_data(data)
            for event in conn.events():
                if isinstance(event, ResponseReceived) and event.stream_id == stream:
                    status = int(dict(event.headers)[b":status"])
                    done = event.end_stream
                elif isinstance(event, DataReceived) and event.stream_id == stream:
                    body += event.data
                    done = event.end_stream
    return status, body


def check_pinning(targets: Sequence[Target], cpu: int) -> None:
    for target in targets:
        if target.process is None:
            continue
        for pid in procs.process_tree(target.process.pid):
            if procs.affinity(pid) != {cpu}:
                raise procs.BenchmarkError(f"{target.name} pid {pid} is not pinned to CPU {cpu}")
