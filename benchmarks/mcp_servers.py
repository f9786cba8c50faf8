"""The servers of the ``mcp`` scenario: the MCP upstream, the gateway, ContextForge and mcp-proxy.

Each ``start_*`` launches its server pinned to a CPU through the run's ``ProcessSet`` (which stops it
however the run ends) and returns once it answers an MCP ``tools/call``. Configs are what a user
would write after reading each project's quick start, with what the comparison needs spelled out.

The peers live in their own virtual environments under ``benchmarks/.work/peers`` (``make
bench-deps`` creates them from the pinned lists in ``benchmarks/peers/``) so that their dependency
pins never touch the project's venv.
"""

from __future__ import annotations

import http.client
import os
import secrets
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import orjson

from benchmarks import tools
from benchmarks.mcp_client import McpSession
from benchmarks.procs import BenchmarkError, ManagedProcess, ProcessSet, http_get, wait_until
from benchmarks.scenario import WORK_ROOT

HOST = "127.0.0.1"
PEERS_DIR = WORK_ROOT / "peers"
PEERS_HINT = "run `make bench-deps` (it creates the peers' venvs under benchmarks/.work/peers)"
CALL_TOOL = "echo"
# The upstream's tool set for the fan-out: this many targets of this many tools.
FANOUT_TARGETS = 10
FANOUT_TOOLS = 50
START_TIMEOUT_S = 120.0  # ContextForge migrates its database on a first start


@dataclass(frozen=True)
class Ports:
    upstream: int
    gateway: int
    gateway_stats: int
    gateway_readiness: int
    fanout: int
    fanout_stats: int
    fanout_readiness: int
    contextforge: int
    contextforge_stateful: int
    mcp_proxy: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(*(base + offset for offset in range(10)))

    def all(self) -> tuple[int, ...]:
        return (
            self.upstream,
            self.gateway,
            self.gateway_stats,
            self.gateway_readiness,
            self.fanout,
            self.fanout_stats,
            self.fanout_readiness,
            self.contextforge,
            self.contextforge_stateful,
            self.mcp_proxy,
        )


def upstream_url(port: int, path: str = "/mcp") -> str:
    return f"http://{HOST}:{port}{path}"


def _answers_tools_call(port: int, path: str, tool: str, headers: dict[str, str] | None = None) -> bool:
    """A readiness check: False (try again) while the server refuses or fails."""
    try:
        with McpSession(HOST, port, path, extra_headers=headers or {}, timeout=10.0) as session:
            result = session.open().call_tool(tool, {"text": "ready"})
    except BenchmarkError:
        return False
    return "ready" in orjson.dumps(result).decode()


# --- the upstream -----------------------------------------------------------------------------------


def start_upstream(processes: ProcessSet, *, port: int, cpu: int) -> ManagedProcess:
    """``benchmarks.mcp_upstream``: the call target at /mcp and the fan-out targets at /t<i>/mcp."""
    argv = [
        sys.executable, "-m", "benchmarks.mcp_upstream", str(port),
        "--fanout", str(FANOUT_TARGETS), "--fanout-tools", str(FANOUT_TOOLS),
    ]  # fmt: skip
    process = processes.start("upstream", argv, cpu=cpu, cwd=tools.REPO_ROOT)
    wait_until(lambda: http_get(HOST, port, "/stats")[0] == 200, what="stats", process=process)
    wait_until(lambda: _answers_tools_call(port, "/mcp", CALL_TOOL), what="tools/call", process=process)
    return process


# --- the gateway ------------------------------------------------------------------------------------


def gateway_config(*, port: int, stats: int, readiness: int, targets: Sequence[tuple[str, str]]) -> str:
    """One worker, no admin listener; at ``warn`` the gateway writes no access log."""
    lines = [
        "config:",
        "  workers: 1",
        '  adminAddr: "off"',
        f'  statsAddr: "{HOST}:{stats}"',
        f'  readinessAddr: "{HOST}:{readiness}"',
        "  logging: {level: warn}",
        "mcp:",
        f"  port: {port}",
        "  targets:",
        *(f'  - {{name: {name}, mcp: {{host: "{url}"}}}}' for name, url in targets),
    ]
    return "\n".join(lines) + "\n"


def start_gateway(
    processes: ProcessSet,
    name: str,
    *,
    port: int,
    stats: int,
    readiness: int,
    targets: Sequence[tuple[str, str]],
    cpu: int,
    check_tool: str | None = CALL_TOOL,
) -> ManagedProcess:
    """The gateway from this interpreter's environment; its worker inherits the supervisor's CPU."""
    config = processes.log_dir / f"{name}.yaml"
    config.write_text(gateway_config(port=port, stats=stats, readiness=readiness, targets=targets))
    argv = [sys.executable, "-m", "agentgateway", "--file", str(config)]
    process = processes.start(name, argv, cpu=cpu, cwd=tools.REPO_ROOT)
    wait_until(lambda: http_get(HOST, readiness, "/healthz/ready")[0] == 200, what="readiness", process=process)
    if check_tool is not None:
        wait_until(lambda: _answers_tools_call(port, "/mcp", check_tool), what="tools/call", process=process)
    return process


# --- the peers --------------------------------------------------------------------------------------


def peer_executable(peer: str, name: str) -> Path:
    path = PEERS_DIR / peer / "bin" / name
    if not os.access(path, os.X_OK):
        raise BenchmarkError(f"{peer} is not installed ({path} missing): {PEERS_HINT}")
    return path


def peer_installed(peer: str) -> bool:
    return os.access(PEERS_DIR / peer / "bin" / "python", os.X_OK)


def peer_version(peer: str, distribution: str) -> str:
    """A distribution's version inside a peer's venv (read by that venv's own interpreter)."""
    python = peer_executable(peer, "python")
    code = f"import importlib.metadata as m\ntry: print(m.version({distribution!r}))\nexcept Exception: print('-')"
    done = subprocess.run([str(python), "-c", code], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip() or "unknown"


def peer_python_version(peer: str) -> str:
    python = peer_executable(peer, "python")
    done = subprocess.run([str(python), "--version"], capture_output=True, text=True, timeout=60, check=False)
    return done.stdout.strip().removeprefix("Python ") or "unknown"


def start_mcp_proxy(processes: ProcessSet, *, port: int, upstream: str, cpu: int) -> ManagedProcess:
    """mcp-proxy fronting an HTTP MCP server with an HTTP endpoint: its server mode (HTTP in, stdio
    out) runs a second mcp-proxy in client mode (stdio in, streamable HTTP out) as its stdio server.
    Both processes are one tree on ``cpu``; the outer one keeps a single session with the inner one
    for all of its clients."""
    executable = str(peer_executable("mcp-proxy", "mcp-proxy"))
    argv = [
        executable, "--host", HOST, "--port", str(port), "--log-level", "WARNING",
        "--",
        executable, "--transport", "streamablehttp", "--log-level", "WARNING", upstream,
    ]  # fmt: skip
    process = processes.start("mcp-proxy", argv, cpu=cpu)
    wait_until(
        lambda: _answers_tools_call(port, "/mcp", CALL_TOOL),
        what="tools/call",
        process=process,
        timeout=START_TIMEOUT_S,
    )
    return process


@dataclass(frozen=True)
class ContextForge:
    process: ManagedProcess
    path: str  # the virtual server's MCP endpoint
    tool: str  # ContextForge's name for the upstream's echo tool
    headers: dict[str, str]  # the bearer token


CONTEXTFORGE_ADMIN = "admin@example.com"


def contextforge_environment(work_dir: Path, *, stateful: bool) -> dict[str, str]:
    """Its quick start's settings, plus what this setup needs. Secrets are made per run (ContextForge
    refuses placeholder or weak ones)."""
    env = dict(os.environ)
    env.update(
        {
            "JWT_SECRET_KEY": secrets.token_hex(32),
            "AUTH_ENCRYPTION_SECRET": secrets.token_hex(32),
            "PLATFORM_ADMIN_EMAIL": CONTEXTFORGE_ADMIN,
            "PLATFORM_ADMIN_PASSWORD": "Bench-" + secrets.token_hex(12),
            "DEFAULT_USER_PASSWORD": "Bench-" + secrets.token_hex(12),
            "DATABASE_URL": f"sqlite:///{work_dir / 'contextforge.db'}",
            # The upstream is on 127.0.0.1, which its SSRF guard refuses by default.
            "SSRF_ALLOW_LOCALHOST": "true",
            # On by default: 100 MCP requests per minute per client, which a benchmark exceeds at once.
            "RATE_LIMITING_ENABLED": "false",
            # Default false: every tools/call opens (and closes) its own upstream MCP session. True
            # binds one upstream session to each client session, which is then reused.
            "USE_STATEFUL_SESSIONS": "true" if stateful else "false",
            "LOG_LEVEL": "ERROR",  # its default, stated
        }
    )
    return env


def _contextforge_token(env: dict[str, str], cwd: Path) -> str:
    """A bearer token from ContextForge's own tool, as its API guide shows."""
    python = peer_executable("contextforge", "python")
    argv = [
        str(python), "-m", "mcpgateway.utils.create_jwt_token",
        "--username", CONTEXTFORGE_ADMIN, "--admin", "--exp", "600",
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env, cwd=cwd, check=False)
    token = done.stdout.strip().splitlines()[0] if done.stdout.strip() else ""
    if done.returncode != 0 or not token.startswith("ey"):
        raise BenchmarkError(f"ContextForge's create_jwt_token failed:\n{done.stdout}\n{done.stderr}")
    return token


def _rest(port: int, method: str, path: str, token: str, body: object | None = None) -> object:
    conn = http.client.HTTPConnection(HOST, port, timeout=60.0)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request(method, path, orjson.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
    finally:
        conn.close()
    if response.status >= 300:
        raise BenchmarkError(f"ContextForge {method} {path} answered HTTP {response.status}: {data[:500]!r}")
    return orjson.loads(data)


def start_contextforge(
    processes: ProcessSet, name: str, *, port: int, upstream: str, stateful: bool, cpu: int
) -> ContextForge:
    """``mcpgateway`` (its CLI: uvicorn, one worker by default) with a SQLite database in the run's
    work directory, the upstream registered as a gateway and a virtual server holding its tools,
    reached at ``/servers/<id>/mcp`` as its docs tell clients to."""
    work_dir = processes.log_dir / name
    work_dir.mkdir(parents=True, exist_ok=True)
    env = contextforge_environment(work_dir, stateful=stateful)
    executable = str(peer_executable("contextforge", "mcpgateway"))
    process = processes.start(name, [executable, "--host", HOST, "--port", str(port)], cpu=cpu, env=env, cwd=work_dir)
    wait_until(
        lambda: http_get(HOST, port, "/health")[0] == 200,
        what="health",
        process=process,
        timeout=START_TIMEOUT_S,
    )
    token = _contextforge_token(env, work_dir)
    gateway = _rest(port, "POST", "/gateways", token, {"name": "up", "url": upstream, "transport": "STREAMABLEHTTP"})
    gateway_id = gateway.get("id") if isinstance(gateway, dict) else None
    listed = _rest(port, "GET", "/tools", token)
    tools_ = [
        t
        for t in (listed if isinstance(listed, list) else [])
        if isinstance(t, dict) and t.get("gatewayId") == gateway_id
    ]
    echo = next((t for t in tools_ if t.get("originalName") == CALL_TOOL), None)
    if echo is None:
        raise BenchmarkError(f"ContextForge registered the upstream but lists no {CALL_TOOL} tool: {listed!r:.500}")
    server = _rest(
        port,
        "POST",
        "/servers",
        token,
        {"server": {"name": "bench", "description": "benchmark", "associated_tools": [t["id"] for t in tools_]}},
    )
    server_id = server.get("id") if isinstance(server, dict) else None
    if not isinstance(server_id, str):
        raise BenchmarkError(f"ContextForge created no virtual server: {server!r:.500}")
    headers = {"Authorization": f"Bearer {token}"}
    path = f"/servers/{server_id}/mcp"
    tool = str(echo["name"])
    wait_until(lambda: _answers_tools_call(port, path, tool, headers), what="tools/call", process=process)
    return ContextForge(process=process, path=path, tool=tool, headers=headers)
