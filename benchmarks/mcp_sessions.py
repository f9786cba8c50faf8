"""Scenario ``mcp-sessions``: what idle MCP sessions cost the gateway, and how the session quotas bound
the sessions that run stdio servers.

- **HTTP targets**: one gateway worker, one streamable-HTTP target (``benchmarks.mcp_upstream``). The
  harness opens N sessions as clients do (``initialize``, ``notifications/initialized``, one
  ``tools/call``) and leaves them idle; the worker's resident set size (VmRSS) before and after is
  what N idle sessions add (goal: ≤ 50 MB for 10,000). A sample of the sessions is then checked to
  still answer. The harness is one anonymous client (one address), so ``config.mcp.maxSessionsPerIdentity``
  is raised above N for this part.
- **stdio targets**: a gateway whose target is a stdio server (a process per session), with
  ``apiKey`` identities and the default quotas (``maxStdioSessionsPerIdentity`` 16,
  ``maxStdioSessions`` 64 per backend and worker). The harness asks for M sessions from K identities,
  one identity after the other; it counts the sessions opened, those that ended their identity's
  least recently used one, and those refused (HTTP 429/503, JSON-RPC -32029); then the stdio processes
  alive, and the RSS of the worker and of those processes.

The stdio server is ``benchmarks.mcp_stdio_server`` (the standard library only: a small process).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import http.client
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks import mcp_servers, procs, tools
from benchmarks.mcp_client import CLIENT_INFO, PROTOCOL_VERSION
from benchmarks.mcp_servers import HOST
from benchmarks.report import markdown_table, write_section
from benchmarks.scenario import RunOptions, Scenario, add_run_options, run_options

NAME = "mcp-sessions"
DEFAULT_BASE_PORT = 18280
HTTP_SESSIONS = 10_000
STDIO_ATTEMPTS = 1_000
STDIO_IDENTITIES = 20
RSS_GOAL_BYTES = 50 * 2**20  # for HTTP_SESSIONS idle sessions
CHECKED = 100  # sessions checked to still answer after the measurement
QUOTA_ERROR = -32029
SETTLE_S = 1.0  # after the last session opened, before RSS is read (ended sessions' tasks finish)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)
    parser.add_argument("--sessions", type=int, default=HTTP_SESSIONS, help=f"idle HTTP sessions ({HTTP_SESSIONS})")
    parser.add_argument(
        "--stdio-attempts", type=int, default=STDIO_ATTEMPTS, help=f"stdio sessions asked for ({STDIO_ATTEMPTS})"
    )
    parser.add_argument(
        "--stdio-identities",
        type=int,
        default=STDIO_IDENTITIES,
        help=f"API keys the stdio sessions are asked with, in turn ({STDIO_IDENTITIES})",
    )


# --- a client that opens sessions quickly -----------------------------------------------------------


class Opener:
    """MCP sessions over one keep-alive connection (reopened when the gateway closes it)."""

    def __init__(self, port: int, headers: dict[str, str] | None = None) -> None:
        self.port = port
        self.headers = {"content-type": "application/json", "accept": "application/json", **(headers or {})}
        self.conn = http.client.HTTPConnection(HOST, port, timeout=60)

    def post(self, message: dict[str, Any], token: str | None = None) -> tuple[int, dict[str, str], Any]:
        headers = dict(self.headers)
        if token is not None:
            headers["mcp-session-id"] = token
        for attempt in range(2):
            try:
                self.conn.request("POST", "/mcp", orjson.dumps(message), headers)
                response = self.conn.getresponse()
                body = response.read()
                break
            except (ConnectionError, http.client.HTTPException):
                self.conn.close()
                if attempt:
                    raise
        answer_headers = {name.lower(): value for name, value in response.getheaders()}
        if answer_headers.get("connection", "").lower() == "close":
            self.conn.close()
        return response.status, answer_headers, orjson.loads(body) if body else None

    def open(self) -> tuple[int, str | None, Any]:
        """(HTTP status, session token or None, answer) of one initialize + initialized."""
        params = {"protocolVersion": PROTOCOL_VERSION, "capabilities": {}, "clientInfo": CLIENT_INFO}
        status, headers, answer = self.post({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": params})
        token = headers.get("mcp-session-id")
        if status != 200 or token is None:
            return status, None, answer
        done, _, _ = self.post({"jsonrpc": "2.0", "method": "notifications/initialized"}, token)
        if done != 202:
            raise procs.BenchmarkError(f"notifications/initialized answered HTTP {done}")
        return status, token, answer

    def call(self, token: str, tool: str, arguments: dict[str, Any]) -> tuple[int, Any]:
        message = {"jsonrpc": "2.0", "id": 2, "method": "tools/call", "params": {"name": tool, "arguments": arguments}}
        status, _, answer = self.post(message, token)
        return status, answer

    def close(self) -> None:
        self.conn.close()


# --- measuring --------------------------------------------------------------------------------------


def rss_bytes(pids: Iterable[int]) -> int:
    """Sum of VmRSS over the given processes."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
    return total


def worker_and_children(gateway: procs.ManagedProcess) -> tuple[int, list[int]]:
    """The gateway's worker (the supervisor's child) and the worker's own children (stdio servers)."""
    tree = procs.process_tree(gateway.pid)
    parents = {pid: _parent(pid) for pid in tree}
    workers = [pid for pid in tree if parents[pid] == gateway.pid]
    if len(workers) != 1:
        raise procs.BenchmarkError(f"expected one gateway worker, found {workers}")
    worker = workers[0]
    return worker, [pid for pid in tree if parents[pid] == worker]


def _parent(pid: int) -> int:
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return int(stat.rsplit(")", 1)[1].split()[1])
    return 0


@dataclass(frozen=True)
class HttpResult:
    sessions: int
    seconds: float  # to open them all
    rss_before: int
    rss_after: int
    checked: int
    answered: int

    @property
    def added(self) -> int:
        return self.rss_after - self.rss_before

    @property
    def per_session(self) -> float:
        return self.added / self.sessions if self.sessions else 0.0


@dataclass(frozen=True)
class StdioResult:
    attempts: int
    identities: int
    opened: int
    refused_429: int
    refused_503: int
    other: int
    processes: int  # stdio servers alive at the end
    worker_rss_before: int
    worker_rss_after: int
    processes_rss: int
    seconds: float


def gateway_config(
    *, port: int, stats: int, readiness: int, target: str, mcp: dict[str, Any], keys: list[str] | None = None
) -> str:
    lines = [
        "config:",
        "  workers: 1",
        '  adminAddr: "off"',
        f'  statsAddr: "{HOST}:{stats}"',
        f'  readinessAddr: "{HOST}:{readiness}"',
        "  logging: {level: warn}",
        f"  mcp: {orjson.dumps(mcp).decode()}",
        "binds:",
        f"- port: {port}",
        "  listeners:",
        "  - routes:",
        "    - name: mcp",
        *(
            [f"      policies: {{apiKey: {{mode: strict, keys: {orjson.dumps([{'key': k} for k in keys]).decode()}}}}}"]
            if keys
            else []
        ),
        "      backends:",
        f"      - mcp: {{targets: [{target}]}}",
    ]
    return "\n".join(lines) + "\n"


def start_gateway(
    processes: procs.ProcessSet, name: str, config: str, readiness: int, cpu: int
) -> procs.ManagedProcess:
    path = processes.log_dir / f"{name}.yaml"
    path.write_text(config)
    argv = [sys.executable, "-m", "agentgateway", "--file", str(path)]
    process = processes.start(name, argv, cpu=cpu, cwd=tools.REPO_ROOT)
    procs.wait_until(
        lambda: procs.http_get(HOST, readiness, "/healthz/ready")[0] == 200, what="readiness", process=process
    )
    return process


def measure_http(processes: procs.ProcessSet, options: RunOptions, count: int) -> HttpResult:
    base = options.base_port
    upstream_port, port, stats, readiness = base, base + 1, base + 2, base + 3
    mcp_servers.start_upstream(processes, port=upstream_port, cpu=options.load_cpu)
    target = f'{{name: up, mcp: {{host: "{mcp_servers.upstream_url(upstream_port)}"}}}}'
    config = gateway_config(
        port=port, stats=stats, readiness=readiness, target=target,
        mcp={"maxSessionsPerIdentity": count + CHECKED + 100},
    )  # fmt: skip
    gateway = start_gateway(processes, "gateway-http", config, readiness, options.proxy_cpu)
    opener = Opener(port)
    try:
        # Warm up: code paths, pools and allocator arenas of a first few sessions, ended again.
        for _ in range(CHECKED):
            _status, token, answer = opener.open()
            if token is None:
                raise procs.BenchmarkError(f"initialize failed: {answer!r:.300}")
            _checked_call(opener, token)
        time.sleep(SETTLE_S)
        worker, _ = worker_and_children(gateway)
        before = rss_bytes([worker])
        tokens: list[str] = []
        started = time.monotonic()
        for index in range(count):
            status, token, answer = opener.open()
            if token is None:
                raise procs.BenchmarkError(f"session {index + 1}: initialize answered HTTP {status}: {answer!r:.300}")
            _checked_call(opener, token)
            tokens.append(token)
        seconds = time.monotonic() - started
        time.sleep(SETTLE_S)
        after = rss_bytes([worker])
        step = max(1, len(tokens) // CHECKED)
        sample = tokens[::step][:CHECKED]
        answered = sum(1 for token in sample if _answers(opener, token))
    finally:
        opener.close()
    return HttpResult(count, seconds, before, after, len(sample), answered)


def _checked_call(opener: Opener, token: str) -> None:
    status, answer = opener.call(token, mcp_servers.CALL_TOOL, {"text": "idle"})
    if status != 200 or not isinstance(answer, dict) or "result" not in answer:
        raise procs.BenchmarkError(f"tools/call answered HTTP {status}: {answer!r:.300}")


def _answers(opener: Opener, token: str) -> bool:
    status, answer = opener.call(token, mcp_servers.CALL_TOOL, {"text": "still here"})
    return status == 200 and isinstance(answer, dict) and "result" in answer


def measure_stdio(processes: procs.ProcessSet, options: RunOptions, attempts: int, identities: int) -> StdioResult:
    base = options.base_port
    port, stats, readiness = base + 4, base + 5, base + 6
    keys = [f"bench-key-{i:03d}" for i in range(identities)]
    argv = orjson.dumps(["-m", "benchmarks.mcp_stdio_server"]).decode()
    env = orjson.dumps({"PYTHONPATH": str(tools.REPO_ROOT)}).decode()
    target = f'{{name: local, stdio: {{cmd: "{sys.executable}", args: {argv}, env: {env}}}}}'
    config = gateway_config(port=port, stats=stats, readiness=readiness, target=target, mcp={}, keys=keys)
    gateway = start_gateway(processes, "gateway-stdio", config, readiness, options.proxy_cpu)
    worker, _ = worker_and_children(gateway)
    before = rss_bytes([worker])
    per_identity = -(-attempts // identities)
    opened = refused_429 = refused_503 = other = 0
    started = time.monotonic()
    done = 0
    for key in keys:
        opener = Opener(port, {"authorization": f"Bearer {key}"})
        try:
            for _ in range(min(per_identity, attempts - done)):
                done += 1
                status, token, answer = opener.open()
                if token is not None:
                    opened += 1
                    _checked_call(opener, token)
                elif status in (429, 503) and _quota_error(answer):
                    refused_429 += status == 429
                    refused_503 += status == 503
                else:
                    other += 1
                    print(f"  unexpected answer: HTTP {status}: {answer!r:.200}", file=sys.stderr)
        finally:
            opener.close()
    seconds = time.monotonic() - started
    time.sleep(SETTLE_S * 2)  # ended sessions' processes exit
    worker, children = worker_and_children(gateway)
    return StdioResult(
        attempts=done,
        identities=identities,
        opened=opened,
        refused_429=refused_429,
        refused_503=refused_503,
        other=other,
        processes=len(children),
        worker_rss_before=before,
        worker_rss_after=rss_bytes([worker]),
        processes_rss=rss_bytes(children),
        seconds=seconds,
    )


def _quota_error(answer: Any) -> bool:
    return (
        isinstance(answer, dict)
        and isinstance(answer.get("error"), dict)
        and answer["error"].get("code") == QUOTA_ERROR
    )


# --- report -----------------------------------------------------------------------------------------


def _mib(value: float) -> str:
    return f"{value / 2**20:,.1f}"


def section(command: str, started: datetime.datetime, http: HttpResult, stdio: StdioResult | None) -> str:
    met = "met" if http.added * HTTP_SESSIONS / max(http.sessions, 1) <= RSS_GOAL_BYTES else "not met"
    http_table = markdown_table(
        ("idle sessions", "opened in s", "worker RSS before MiB", "after MiB", "added MiB", "KiB per session",
         "sample still answering"),
        [[f"{http.sessions:,}", f"{http.seconds:,.1f}", _mib(http.rss_before), _mib(http.rss_after), _mib(http.added),
          f"{http.per_session / 1024:,.2f}", f"{http.answered}/{http.checked}"]],
    )  # fmt: skip
    parts = [
        f"## {NAME} — idle MCP sessions: memory, and the quotas on stdio sessions",
        "",
        "One gateway worker. HTTP: one streamable-HTTP target (`benchmarks/mcp_upstream.py`); the harness "
        "opens the sessions one after the other (`initialize`, `notifications/initialized`, one `tools/call`) "
        "and leaves them idle; RSS is the worker's VmRSS after 100 warm-up sessions and after the last "
        "session (1 s later each). stdio: a target that is a process per session "
        "(`benchmarks/mcp_stdio_server.py`), `apiKey` identities, the default quotas "
        "(`maxStdioSessionsPerIdentity` 16, `maxStdioSessions` 64).",
        "",
        f"- Command: `{command}`",
        f"- Date: {started:%Y-%m-%d %H:%M} UTC",
        f"- Machine: {tools.machine_summary()}",
        f"- Versions: gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()}), "
        f"Python {tools.python_version()}",
        "",
        http_table,
        "",
        f"- RSS added by {HTTP_SESSIONS:,} idle HTTP sessions ≤ {RSS_GOAL_BYTES // 2**20} MB: **{met}** — "
        f"{_mib(http.added)} MiB for {http.sessions:,} ({http.per_session / 1024:,.2f} KiB each)",
    ]
    if stdio is not None:
        stdio_table = markdown_table(
            ("asked", "identities", "opened", "refused 429", "refused 503", "other", "stdio processes alive",
             "worker RSS before MiB", "after MiB", "processes RSS MiB", "seconds"),
            [[f"{stdio.attempts:,}", str(stdio.identities), str(stdio.opened), str(stdio.refused_429),
              str(stdio.refused_503), str(stdio.other), str(stdio.processes), _mib(stdio.worker_rss_before),
              _mib(stdio.worker_rss_after), _mib(stdio.processes_rss), f"{stdio.seconds:,.1f}"]],
        )  # fmt: skip
        parts += [
            "",
            stdio_table,
            "",
            f"- {stdio.attempts:,} stdio sessions asked for by {stdio.identities} identities, one identity after "
            f"the other: {stdio.opened} opened (beyond an identity's 16, each ended that identity's least "
            f"recently used session), {stdio.refused_503} refused with 503 (the backend's 64 held by other "
            f"identities), {stdio.refused_429} with 429; {stdio.processes} stdio processes alive at the end.",
        ]
    return "\n".join(parts) + "\n"


def run(args: argparse.Namespace) -> int:
    options = run_options(args, NAME)
    if args.sessions < 1 or args.stdio_attempts < 0 or args.stdio_identities < 1:
        raise procs.BenchmarkError("--sessions and --stdio-identities must be at least 1")
    procs.require_free_ports(range(options.base_port, options.base_port + 7))
    options.work_dir.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now(datetime.UTC)
    with procs.ProcessSet(options.work_dir) as processes:
        print(f"{NAME}: opening {args.sessions:,} idle HTTP sessions", file=sys.stderr, flush=True)
        http = measure_http(processes, options, args.sessions)
        processes.stop_all()
        stdio = None
        if args.stdio_attempts:
            print(f"{NAME}: asking for {args.stdio_attempts:,} stdio sessions", file=sys.stderr, flush=True)
            stdio = measure_stdio(processes, options, args.stdio_attempts, args.stdio_identities)
    text = section(options.command, started, http, stdio)
    print(text)
    if options.results_path is not None:
        write_section(NAME, text, options.results_path)
        print(f"wrote the {NAME} section of {options.results_path}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary=(
        "memory of 10,000 idle MCP sessions (HTTP targets); 1,000 stdio sessions asked for, bounded by the "
        "per-identity session quotas"
    ),
    add_arguments=add_arguments,
    run=run,
)
