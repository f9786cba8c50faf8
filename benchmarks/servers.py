"""The servers a scenario starts: the nginx upstream, and the three proxies in front of it.

Each ``start_*`` writes its config into the run's work directory, launches the server pinned to a CPU
through the run's ``ProcessSet`` (which stops it however the run ends), and returns once it answers.
Configs are the minimal ones a user would write, with what makes the comparison fair spelled out: one
worker, no access log, keep-alive on both sides.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import ManagedProcess, ProcessSet, http_get, wait_until

HOST = "127.0.0.1"
# Both nginx defaults (1000 requests per connection) would make wrk and the proxies reconnect every
# few milliseconds at these rates, so measurements would include connection setup.
KEEPALIVE_REQUESTS = 100_000_000


@dataclass(frozen=True)
class Ports:
    upstream: int
    gateway: int
    nginx: int
    envoy: int
    floor: int
    gateway_stats: int
    gateway_readiness: int
    # The second gateway of the ``http`` scenario (two workers) and its admin ports.
    gateway_2w: int
    gateway_2w_stats: int
    gateway_2w_readiness: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(base, base + 1, base + 2, base + 3, base + 4, base + 11, base + 12, base + 5, base + 13, base + 14)

    def all(self) -> tuple[int, ...]:
        return (
            self.upstream,
            self.gateway,
            self.nginx,
            self.envoy,
            self.floor,
            self.gateway_stats,
            self.gateway_readiness,
            self.gateway_2w,
            self.gateway_2w_stats,
            self.gateway_2w_readiness,
        )

    def two_workers(self) -> Ports:
        """The ports of the two-worker gateway, where ``gateway_config`` looks for the gateway's."""
        return dataclasses.replace(
            self,
            gateway=self.gateway_2w,
            gateway_stats=self.gateway_2w_stats,
            gateway_readiness=self.gateway_2w_readiness,
        )


def response_body(size: int) -> bytes:
    """A printable body of exactly ``size`` bytes (nginx's ``return`` takes it inline)."""
    pattern = b"agentgateway-benchmark-"
    return (pattern * (size // len(pattern) + 1))[:size]


def _answers_with(port: int, body: bytes, path: str = "/") -> Callable[[], bool]:
    def check() -> bool:
        status, received = http_get(HOST, port, path)
        return status == 200 and received == body

    return check


def _nginx_prefix(work_dir: Path, name: str) -> Path:
    """A private nginx prefix: Debian's compiled-in temp paths under /var/lib/nginx need root."""
    prefix = work_dir / name
    for sub in ("logs", "tmp"):
        (prefix / sub).mkdir(parents=True, exist_ok=True)
    return prefix


def _nginx_main(prefix: Path, http_block: str) -> str:
    tmp = prefix / "tmp"
    return f"""\
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
    keepalive_requests {KEEPALIVE_REQUESTS};
    keepalive_timeout 300s;
{http_block}}}
"""


def _start_nginx(processes: ProcessSet, name: str, nginx: str, http_block: str, *, cpu: int) -> ManagedProcess:
    prefix = _nginx_prefix(processes.log_dir, name)
    conf = prefix / "nginx.conf"
    conf.write_text(_nginx_main(prefix, http_block))
    argv = [nginx, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")]
    return processes.start(name, argv, cpu=cpu)


def start_upstream(processes: ProcessSet, nginx: str, *, port: int, body: bytes, cpu: int) -> ManagedProcess:
    """nginx, one worker, answering every request with ``body`` from memory."""
    server = f"""\
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            default_type application/octet-stream;
            return 200 "{body.decode()}";
        }}
    }}
"""
    process = _start_nginx(processes, "upstream", nginx, server, cpu=cpu)
    wait_until(_answers_with(port, body), what="upstream answer", process=process)
    return process


def start_nginx_proxy(
    processes: ProcessSet, nginx: str, *, port: int, upstream_port: int, body: bytes, cpu: int
) -> ManagedProcess:
    """nginx as a reverse proxy with a keep-alive upstream pool (HTTP/1.1, no ``Connection: close``)."""
    proxy = f"""\
    upstream bench_upstream {{
        server {HOST}:{upstream_port};
        keepalive 64;
        keepalive_requests {KEEPALIVE_REQUESTS};
    }}
    server {{
        listen {HOST}:{port} backlog=4096;
        location / {{
            proxy_pass http://bench_upstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}
"""
    process = _start_nginx(processes, "nginx-proxy", nginx, proxy, cpu=cpu)
    wait_until(_answers_with(port, body), what="proxied answer", process=process)
    return process


ENVOY_HCM_TYPE = "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
ENVOY_ROUTER_TYPE = "type.googleapis.com/envoy.extensions.filters.http.router.v3.Router"


def envoy_config(port: int, upstream_port: int) -> str:
    """One listener, one cluster, HTTP/1.1 both sides, no access log, no admin listener."""
    return f"""\
static_resources:
  listeners:
  - name: bench
    address: {{socket_address: {{address: {HOST}, port_value: {port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": {ENVOY_HCM_TYPE}
          stat_prefix: bench
          codec_type: HTTP1
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
              "@type": {ENVOY_ROUTER_TYPE}
  clusters:
  - name: upstream
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
        - endpoint:
            address: {{socket_address: {{address: {HOST}, port_value: {upstream_port}}}}}
"""


def start_envoy_proxy(
    processes: ProcessSet, envoy: str, *, port: int, upstream_port: int, body: bytes, cpu: int
) -> ManagedProcess:
    config = processes.log_dir / "envoy.yaml"
    config.write_text(envoy_config(port, upstream_port))
    argv = [
        envoy,
        "--config-path", str(config),
        "--concurrency", "1",
        # Hot restart would claim shared memory keyed by base id; nothing here restarts Envoy.
        "--disable-hot-restart",
        "--log-level", "warn",
    ]  # fmt: skip
    process = processes.start("envoy", argv, cpu=cpu)
    wait_until(_answers_with(port, body), what="proxied answer", process=process)
    return process


def gateway_config(ports: Ports, log_level: str = "warn", workers: int = 1) -> str:
    """One worker unless told; at ``warn`` the gateway writes no access log (``info`` writes a line per
    request)."""
    return f"""\
config:
  workers: {workers}
  adminAddr: "off"
  statsAddr: "{HOST}:{ports.gateway_stats}"
  readinessAddr: "{HOST}:{ports.gateway_readiness}"
  logging: {{level: {log_level}}}
binds:
- port: {ports.gateway}
  listeners:
  - routes:
    - backends:
      - host: "{HOST}:{ports.upstream}"
"""


def start_gateway(
    processes: ProcessSet, *, ports: Ports, body: bytes, cpu: int | str, workers: int = 1, name: str = "gateway"
) -> ManagedProcess:
    """The gateway from this interpreter's environment; its supervisor forks the workers, which inherit
    the supervisor's CPU affinity, so the whole tree runs on ``cpu`` (one CPU, or a CPU list)."""
    config = processes.log_dir / f"{name}.yaml"
    config.write_text(gateway_config(ports, workers=workers))
    argv = [sys.executable, "-m", "agentgateway", "--file", str(config)]
    process = processes.start(name, argv, cpu=cpu)

    def ready() -> bool:
        status, _ = http_get(HOST, ports.gateway_readiness, "/healthz/ready")
        return status == 200

    wait_until(ready, what="readiness", process=process)
    wait_until(_answers_with(ports.gateway, body), what="proxied answer", process=process)
    return process


def start_floor_proxy(processes: ProcessSet, *, port: int, upstream_port: int, body: bytes, cpu: int) -> ManagedProcess:
    """The bare uvloop + httptools proxy of ``benchmarks.floor_proxy``: the floor under the gateway."""
    argv = [sys.executable, "-m", "benchmarks.floor_proxy", str(port), str(upstream_port)]
    process = processes.start("floor", argv, cpu=cpu)
    wait_until(_answers_with(port, body), what="proxied answer", process=process)
    return process
