"""What a set of route policies adds per request: two gateways (one worker each) in front of the
same upstream (nginx, a body from memory), *bare* with a plain route and the other with the same
route plus the policies, measured interleaved and pinned like the ``http`` scenario (proxy on its
core, wrk and upstream on the other). The added cost is the difference of the gateways' CPU time
per request and of their p50 latency, paired per round.

Used by the scenarios that price a policy set (``policies``, ``authz``); each brings its policies,
the headers its requests carry and an in-process measure of its own.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from benchmarks import http, procs, servers, tools
from benchmarks.http_samples import LATENCY_CONNECTIONS, PINNED, SATURATION_CONNECTIONS, Sample, Target
from benchmarks.report import Spread, markdown_table
from benchmarks.scenario import RunOptions
from benchmarks.wrk import DONE_SCRIPT

BARE = "bare"
BODY_SIZE = 1024


def gateway_config(port: int, stats: int, readiness: int, upstream: int, policies: str, settings: str = "") -> str:
    """One worker, access log off, one route named ``bench`` with ``policies`` (YAML, indented);
    ``settings``: more of the ``config:`` block (YAML lines indented by two)."""
    return f"""\
config:
  workers: 1
  adminAddr: "off"
  statsAddr: "{servers.HOST}:{stats}"
  readinessAddr: "{servers.HOST}:{readiness}"
  logging: {{level: warn}}
{settings}binds:
- port: {port}
  listeners:
  - routes:
    - name: bench
{policies}      backends:
      - host: "{servers.HOST}:{upstream}"
"""


def start_gateway(
    processes: procs.ProcessSet,
    name: str,
    config: str,
    port: int,
    readiness: int,
    body: bytes,
    cpu: int,
    headers: Mapping[str, str],
) -> procs.ManagedProcess:
    path = processes.log_dir / f"{name}.yaml"
    path.write_text(config)
    process = processes.start(name, [sys.executable, "-m", "agentgateway", "--file", str(path)], cpu=cpu)

    def ready() -> bool:
        return procs.http_get(servers.HOST, readiness, "/healthz/ready")[0] == 200

    procs.wait_until(ready, what="readiness", process=process)

    def answers() -> bool:
        status, received = procs.http_get(servers.HOST, port, "/", headers=headers)
        return status == 200 and received == body

    procs.wait_until(answers, what="proxied answer (with the benchmark's request headers)", process=process)
    return process


def wrk_script(work_dir: Path, headers: Mapping[str, str]) -> Path:
    """wrk's script: the request headers, then the harness's ``done`` hook."""
    path = work_dir / "wrk-paired.lua"
    lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    path.write_text(lines + DONE_SCRIPT)
    return path


def measure(
    options: RunOptions, name: str, policies: str, headers: Mapping[str, str], settings: str = ""
) -> list[Sample]:
    """Both gateways at c = 1 and 32, ``options.rounds`` interleaved rounds; ``settings`` (the
    ``config:`` block's) apply to the ``name`` gateway only."""
    wrk = tools.find_tool("wrk")
    nginx = tools.find_tool("nginx")
    tools.find_tool("taskset", hint="install util-linux, which every Debian system has")
    base = options.base_port
    upstream_port = base
    gateways = {BARE: (base + 1, base + 11, base + 12), name: (base + 2, base + 13, base + 14)}
    procs.require_free_ports([upstream_port, *(p for ports in gateways.values() for p in ports)])
    http.fresh_work_dir(options.work_dir)
    body = servers.response_body(BODY_SIZE)
    samples: list[Sample] = []
    with procs.ProcessSet(options.work_dir) as processes:
        upstream = servers.start_upstream(processes, nginx, port=upstream_port, body=body, cpu=options.load_cpu)
        targets = []
        for target_name, (port, stats, readiness) in gateways.items():
            own = target_name == name
            config = gateway_config(
                port, stats, readiness, upstream_port, policies if own else "", settings if own else ""
            )
            process = start_gateway(processes, target_name, config, port, readiness, body, options.proxy_cpu, headers)
            http.check_pinning(process, options.proxy_cpu)
            targets.append(Target(target_name, port, process))
        bench_tools = http.Tools(wrk=wrk, nginx=nginx, envoy=None)
        script = wrk_script(options.work_dir, headers)
        bench = http.Bench(upstream=upstream, tools=bench_tools, options=options, script=script)
        for round_index in range(options.rounds):
            for target in targets:
                for c in (LATENCY_CONNECTIONS, SATURATION_CONNECTIONS):
                    samples.append(http.measure(bench, target, PINNED, c, round_index))
    return samples


def facts(options: RunOptions, policies: str) -> str:
    """The section's bullet list: command, machine, versions, pinning, and ``policies`` (a line)."""
    return (
        f"- Command: `{options.command}`\n"
        f"- Machine: {tools.machine_summary()}\n"
        f"- Gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()}), "
        f"Python {tools.python_version()}; 1 worker each, access log off\n"
        f"- Pinning: CPU {options.proxy_cpu} both gateways (measured one at a time), "
        f"CPU {options.load_cpu} wrk (1 thread) and the upstream nginx; "
        f"{options.rounds} round(s) of {options.duration_s} s after {options.warmup_s} s warm-up, "
        "gateways interleaved; medians [min…max]\n"
        f"- {policies}\n"
    )


def _per_request(sample: Sample) -> float | None:
    if sample.proxy_cpu_s is None or not sample.wrk.requests:
        return None
    return sample.proxy_cpu_s / sample.wrk.requests * 1e6


def summarise(samples: Sequence[Sample], name: str, rounds: int) -> str:
    """The table of both gateways and, per c, what ``name`` adds over *bare* (paired per round)."""
    rows = []
    for target in (BARE, name):
        for c in (LATENCY_CONNECTIONS, SATURATION_CONNECTIONS):
            runs = [s for s in samples if s.target == target and s.connections == c]
            rps = Spread.of([s.wrk.requests_per_second for s in runs])
            p50 = Spread.of([s.wrk.p50_us for s in runs])
            cpu = Spread.of([v for s in runs if (v := _per_request(s)) is not None])
            assert rps and p50 and cpu
            rows.append(
                [
                    target,
                    str(c),
                    f"{rps.median:,.0f} [{rps.low:,.0f}…{rps.high:,.0f}]",
                    f"{p50.median:.0f}",
                    f"{statistics.median(s.wrk.p99_us for s in runs):.0f}",
                    f"{cpu.median:.1f} [{cpu.low:.1f}…{cpu.high:.1f}]",
                    str(sum(s.wrk.errors for s in runs)),
                ]
            )
    table = markdown_table(
        ["gateway", "c", "req/s [min…max]", "p50 µs", "p99 µs", "CPU µs/req [min…max]", "errors"], rows, 1
    )
    added = []
    for c in (LATENCY_CONNECTIONS, SATURATION_CONNECTIONS):
        pairs = []
        for r in range(rounds):
            bare = [s for s in samples if s.target == BARE and s.connections == c and s.round == r]
            other = [s for s in samples if s.target == name and s.connections == c and s.round == r]
            if bare and other:
                b, o = _per_request(bare[0]), _per_request(other[0])
                if b is not None and o is not None:
                    pairs.append((o - b, other[0].wrk.p50_us - bare[0].wrk.p50_us))
        cpu = Spread.of([p[0] for p in pairs])
        p50 = Spread.of([p[1] for p in pairs])
        assert cpu and p50
        added.append(
            f"- c={c}: {name} − bare = {cpu.median:+.1f} µs CPU per request [{cpu.low:+.1f}…{cpu.high:+.1f}], "
            f"{p50.median:+.0f} µs p50 [{p50.low:+.0f}…{p50.high:+.0f}]"
        )
    return table + "\n\n" + "\n".join(added) + "\n"
