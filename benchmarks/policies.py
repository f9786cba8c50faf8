"""Scenario ``policies``: what a typical traffic-policy chain costs per request, next to bare proxying.

Two gateways (one worker each) front the same upstream: *bare* has a plain route, *chain* the same
route with request and response header modifiers, a prefix rewrite, a local rate limit (in the
shared-memory table, never exhausted) and a retry policy armed (never triggered). They are measured
interleaved, pinned like the ``http`` scenario (proxy on its core, wrk and upstream on the other).
The added cost is the difference of the gateways' CPU time per request at saturation, paired per
round; an in-process measure of the chain alone (the policies' request and response phases on a
parsed request, no I/O) is printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Sequence

from benchmarks import http, procs, servers, tools
from benchmarks.http_samples import LATENCY_CONNECTIONS, PINNED, SATURATION_CONNECTIONS, Sample, Target
from benchmarks.report import Spread, markdown_table, write_section
from benchmarks.scenario import RunOptions, Scenario, add_run_options, run_options
from benchmarks.wrk import write_script

NAME = "policies"
DEFAULT_BASE_PORT = 18180
BODY_SIZE = 1024
BUDGET_US = 15.0  # the target for the chain's added cost per request

CHAIN_POLICIES = """\
      policies:
        requestHeaderModifier:
          set: { x-tenant: bench, user-agent: agentgateway }
          add: { x-trace: "1" }
          remove: [cookie]
        responseHeaderModifier:
          set: { cache-control: no-store }
          remove: [server]
        urlRewrite:
          path: { prefix: /bench }
        localRateLimit:
        - maxTokens: 1000000000000
          tokensPerFill: 1000000000000
          fillInterval: 1s
        retry:
          attempts: 3
          codes: [502, 503]
"""


def gateway_config(port: int, stats: int, readiness: int, upstream: int, policies: str) -> str:
    return f"""\
config:
  workers: 1
  adminAddr: "off"
  statsAddr: "{servers.HOST}:{stats}"
  readinessAddr: "{servers.HOST}:{readiness}"
  logging: {{level: warn}}
binds:
- port: {port}
  listeners:
  - routes:
    - name: bench
{policies}      backends:
      - host: "{servers.HOST}:{upstream}"
"""


def start_gateway(
    processes: procs.ProcessSet, name: str, config: str, port: int, readiness: int, body: bytes, cpu: int
) -> procs.ManagedProcess:
    path = processes.log_dir / f"{name}.yaml"
    path.write_text(config)
    process = processes.start(name, [sys.executable, "-m", "agentgateway", "--file", str(path)], cpu=cpu)

    def ready() -> bool:
        return procs.http_get(servers.HOST, readiness, "/healthz/ready")[0] == 200

    procs.wait_until(ready, what="readiness", process=process)

    def answers() -> bool:
        status, received = procs.http_get(servers.HOST, port, "/")
        return status == 200 and received == body

    procs.wait_until(answers, what="proxied answer", process=process)
    return process


def chain_in_process(iterations: int = 20000) -> float:
    """µs per request of the chain's request and response phases, no sockets involved."""
    from agentgateway.config.compile import compile_config
    from agentgateway.config.loader import decode_config
    from agentgateway.policy.chain import apply_response
    from agentgateway.server.context import RequestCtx

    runtime = compile_config(decode_config(gateway_config(1, 2, 3, 4, CHAIN_POLICIES)))
    listener = next(iter(runtime.binds.values())).default_listener
    headers = [(b"host", b"bench"), (b"user-agent", b"wrk"), (b"accept", b"*/*"), (b"cookie", b"a=b")]
    response = [(b"server", b"nginx"), (b"content-type", b"application/octet-stream"), (b"date", b"x")]

    def once() -> None:
        ctx = RequestCtx(
            b"GET", b"/x", b"/x", b"", b"bench", list(headers), "1.1", True, None, False, False,
            "127.0.0.1", 40000, b"http", 0.0, "bind/1",
        )  # fmt: skip
        rule = listener.routes.select_rule(ctx.host, ctx.method, ctx.path, ctx.headers, ctx.query)
        assert rule is not None
        route = rule.route
        ctx.match_prefix = rule.match_prefix
        for policy in route.chain.request:
            if policy.on_request(ctx) is not None:  # type: ignore[union-attr]
                raise AssertionError("the benchmark chain must let requests through")
        apply_response(route.chain, ctx, 200, list(response))

    def bare() -> None:
        ctx = RequestCtx(
            b"GET", b"/x", b"/x", b"", b"bench", list(headers), "1.1", True, None, False, False,
            "127.0.0.1", 40000, b"http", 0.0, "bind/1",
        )  # fmt: skip
        rule = listener.routes.select_rule(ctx.host, ctx.method, ctx.path, ctx.headers, ctx.query)
        assert rule is not None
        list(response)

    results = []
    for fn in (once, bare) * 3:
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        results.append((fn is once, (time.perf_counter() - start) / iterations * 1e6))
    chain = statistics.median(t for is_chain, t in results if is_chain)
    base = statistics.median(t for is_chain, t in results if not is_chain)
    return chain - base


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)


def _per_request(sample: Sample) -> float | None:
    if sample.proxy_cpu_s is None or not sample.wrk.requests:
        return None
    return sample.proxy_cpu_s / sample.wrk.requests * 1e6


def summarise(samples: Sequence[Sample], in_process_us: float, rounds: int) -> str:
    rows = []
    for name in ("bare", "chain"):
        for c in (LATENCY_CONNECTIONS, SATURATION_CONNECTIONS):
            runs = [s for s in samples if s.target == name and s.connections == c]
            rps = Spread.of([s.wrk.requests_per_second for s in runs])
            p50 = Spread.of([s.wrk.p50_us for s in runs])
            cpu = Spread.of([v for s in runs if (v := _per_request(s)) is not None])
            assert rps and p50 and cpu
            rows.append(
                [
                    name,
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
            bare = [s for s in samples if s.target == "bare" and s.connections == c and s.round == r]
            chain = [s for s in samples if s.target == "chain" and s.connections == c and s.round == r]
            if bare and chain:
                b, ch = _per_request(bare[0]), _per_request(chain[0])
                if b is not None and ch is not None:
                    pairs.append((ch - b, chain[0].wrk.p50_us - bare[0].wrk.p50_us))
        cpu = Spread.of([p[0] for p in pairs])
        p50 = Spread.of([p[1] for p in pairs])
        assert cpu and p50
        added.append(
            f"- c={c}: chain − bare = {cpu.median:+.1f} µs CPU per request [{cpu.low:+.1f}…{cpu.high:+.1f}], "
            f"{p50.median:+.0f} µs p50"
        )
    verdict = (
        f"- In-process, the chain's request and response phases alone: {in_process_us:.1f} µs per request "
        f"(target: ≤ {BUDGET_US:g} µs added)."
    )
    return table + "\n\n" + "\n".join(added) + "\n" + verdict + "\n"


def run(args: argparse.Namespace) -> int:
    options: RunOptions = run_options(args, NAME)
    wrk = tools.find_tool("wrk")
    nginx = tools.find_tool("nginx")
    tools.find_tool("taskset", hint="install util-linux, which every Debian system has")
    base = options.base_port
    upstream_port = base
    gateways = {"bare": (base + 1, base + 11, base + 12), "chain": (base + 2, base + 13, base + 14)}
    procs.require_free_ports([upstream_port, *(p for ports in gateways.values() for p in ports)])
    http.fresh_work_dir(options.work_dir)
    in_process = chain_in_process()
    print(f"{NAME}: chain alone, in process: {in_process:.2f} µs/request", file=sys.stderr)
    body = servers.response_body(BODY_SIZE)
    with procs.ProcessSet(options.work_dir) as processes:
        upstream = servers.start_upstream(
            processes, nginx, port=upstream_port, body=body, cpu=options.load_cpu
        )
        targets = []
        for name, (port, stats, readiness) in gateways.items():
            policies = CHAIN_POLICIES if name == "chain" else ""
            config = gateway_config(port, stats, readiness, upstream_port, policies)
            process = start_gateway(processes, name, config, port, readiness, body, options.proxy_cpu)
            http.check_pinning(process, options.proxy_cpu)
            targets.append(Target(name, port, process))
        bench_tools = http.Tools(wrk=wrk, nginx=nginx, envoy=None)
        bench = http.Bench(
            upstream=upstream, tools=bench_tools, options=options, script=write_script(options.work_dir)
        )
        samples: list[Sample] = []
        for round_index in range(options.rounds):
            for target in targets:
                for c in (LATENCY_CONNECTIONS, SATURATION_CONNECTIONS):
                    samples.append(http.measure(bench, target, PINNED, c, round_index))
    facts = (
        f"- Command: `{options.command}`\n"
        f"- Machine: {tools.machine_summary()}\n"
        f"- Gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()}), "
        f"Python {tools.python_version()}; 1 worker each, access log off\n"
        f"- Pinning: CPU {options.proxy_cpu} both gateways (measured one at a time), "
        f"CPU {options.load_cpu} wrk (1 thread) and the upstream nginx; "
        f"{options.rounds} round(s) of {options.duration_s} s after {options.warmup_s} s warm-up, "
        "gateways interleaved; medians [min…max]\n"
        "- Chain: requestHeaderModifier (set 2, add 1, remove 1), responseHeaderModifier (set 1, remove 1), "
        "urlRewrite (prefix), localRateLimit (shared table, never exhausted), retry (3 attempts, armed, "
        "never triggered)\n"
    )
    text = (
        f"## {NAME} — cost of a typical traffic-policy chain\n\n"
        "Two gateways in front of the same upstream (nginx, 1 KiB from memory): *bare* proxies a plain "
        "route, *chain* the same route with the policies below. The added cost is the difference in the "
        "gateway's CPU time per request, paired per round.\n\n"
        + facts
        + "\n"
        + summarise(samples, in_process, options.rounds)
    )
    print(text)
    if options.results_path is not None:
        write_section(NAME, text, options.results_path)
        print(f"wrote the {NAME} section of {options.results_path}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary="per-request cost of headers + rewrite + local rate limit + retry armed vs bare proxying",
    add_arguments=add_arguments,
    run=run,
)
