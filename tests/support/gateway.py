"""Run the real daemon (``python -m agentgateway``) and real upstream processes on 127.0.0.1."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

REPO = Path(__file__).resolve().parents[2]


def _listen_port_range() -> range:
    """Ports below the kernel's ephemeral range (``ip_local_port_range``, 32768-60999 by
    default). A port the kernel picked for ``bind(0)`` comes from the ephemeral range, and once
    released it can be handed to any outgoing connection of the run before the gateway binds it
    ("Address already in use"); a port below that range never is."""
    try:
        ephemeral_low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        ephemeral_low = 32768
    return range(20000, max(ephemeral_low, 20000))


_PORTS = _listen_port_range()
# each process of the run (pytest, and test servers that pick ports) starts at its own place
_next_port = int.from_bytes(os.urandom(2), "big")


def free_port() -> int:
    """A port nothing listens on, for a server of the test to bind (on any address)."""
    global _next_port
    for _ in range(len(_PORTS)):
        port = _PORTS[_next_port % len(_PORTS)]
        _next_port += 1
        with socket.socket() as s:
            try:
                s.bind(("0.0.0.0", port))  # also fails when 127.0.0.1:port is taken
            except OSError:
                continue
            return port
    with socket.socket() as s:  # no range below the ephemeral one on this machine
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(predicate: Any, timeout: float, what: str, interval: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


class Process:
    """A child process whose output goes to a file (read by tests, shown on failure)."""

    def __init__(
        self, args: list[str], log_path: Path, env: dict[str, str] | None = None, cwd: Path | None = None
    ) -> None:
        self.log_path = log_path
        self._log = open(log_path, "wb")  # noqa: SIM115 - closed in stop()
        full_env = {**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})}
        self.proc = subprocess.Popen(
            args, stdout=self._log, stderr=subprocess.STDOUT, cwd=cwd or REPO, env=full_env, start_new_session=True
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        # Workers live in the same session: make sure none outlives the test.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self._log.close()
        return self.proc.returncode


class UpstreamServer(Process):
    def __init__(
        self,
        tmp: Path,
        name: str = "up",
        port: int | None = None,
        tls: tuple[str, str] | None = None,
        client_ca: str | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        args = [sys.executable, "-m", "tests.support.upstream", "--port", str(self.port), "--name", name]
        if tls:
            args += ["--cert", tls[0], "--key", tls[1]]
        if client_ca:
            args += ["--client-ca", client_ca]
        super().__init__(args, tmp / f"upstream-{name}-{self.port}.log")
        wait_for(lambda: "ready" in self.output() or not self.alive(), 15, f"upstream {name}")
        if not self.alive():
            raise RuntimeError(f"upstream {name} failed:\n{self.output()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def requests(self) -> list[dict[str, Any]]:
        """What reached this upstream so far (its /__log)."""
        return list(httpx.get(f"http://{self.address}/__log", timeout=5).json()["requests"])

    def open_connections(self) -> int:
        return int(httpx.get(f"http://{self.address}/__log", timeout=5).json()["open"]) - 1  # minus ours


class RateLimitService(Process):
    """The test RLS (``tests/support/rls.py``)."""

    def __init__(self, tmp: Path, limit: int = 3, delay: float = 0.0, headers: dict[str, str] | None = None) -> None:
        self.port = free_port()
        args = [sys.executable, "-m", "tests.support.rls", "--port", str(self.port), "--limit", str(limit)]
        args += ["--delay", str(delay)]
        for k, v in (headers or {}).items():
            args += ["--header", f"{k}={v}"]
        super().__init__(args, tmp / f"rls-{self.port}.log")
        wait_for(lambda: "ready" in self.output() or not self.alive(), 20, "the rate limit service")
        if not self.alive():
            raise RuntimeError(f"rate limit service failed:\n{self.output()}")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


class RedisServer(Process):
    """A real ``redis-server`` (Debian's package) on a free port, in memory only."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"]
        args += ["--dir", str(tmp)]
        super().__init__(args, tmp / f"redis-{self.port}.log")
        wait_for(lambda: "Ready to accept connections" in self.output() or not self.alive(), 20, "redis-server")
        if not self.alive():
            raise RuntimeError(f"redis-server failed:\n{self.output()}")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


class Gateway(Process):
    """The daemon on a config written to ``tmp/config.yaml``; management planes on free ports."""

    def __init__(
        self,
        tmp: Path,
        config: dict[str, Any] | str,
        workers: int | None = 1,
        env: dict[str, str] | None = None,
        wait: bool = True,
        cwd: Path | None = None,
    ) -> None:
        self.tmp = tmp
        self.admin_port = free_port()
        self.stats_port = free_port()
        self.ready_port = free_port()
        self.workers = workers
        self.config_path = tmp / "config.yaml"
        self.write_config(config)
        super().__init__(
            [sys.executable, "-m", "agentgateway", "-f", str(self.config_path)], tmp / "gateway.log", env, cwd
        )
        if wait:
            self.wait_ready()

    def render(self, config: dict[str, Any] | str) -> str:
        if isinstance(config, str):
            return config
        cfg = dict(config)
        settings = dict(cfg.get("config") or {})
        settings.setdefault("adminAddr", f"127.0.0.1:{self.admin_port}")
        settings.setdefault("statsAddr", f"127.0.0.1:{self.stats_port}")
        settings.setdefault("readinessAddr", f"127.0.0.1:{self.ready_port}")
        if self.workers is not None:  # None: the config's own workerThreads (or one per core)
            settings.setdefault("workers", self.workers)
        cfg["config"] = settings
        return yaml.safe_dump(cfg, sort_keys=False)

    def write_config(self, config: dict[str, Any] | str) -> None:
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(self.render(config))
        os.replace(tmp, self.config_path)

    def wait_ready(self, timeout: float = 30.0) -> None:
        def ready() -> bool:
            if not self.alive():
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.output()}")
            try:
                return httpx.get(self.ready_url, timeout=1).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(ready, timeout, "gateway readiness")

    @property
    def ready_url(self) -> str:
        return f"http://127.0.0.1:{self.ready_port}/healthz/ready"

    @property
    def admin_url(self) -> str:
        return f"http://127.0.0.1:{self.admin_port}"

    def metrics_text(self) -> str:
        return httpx.get(f"http://127.0.0.1:{self.stats_port}/metrics", timeout=5).text

    def metric(self, name: str, **labels: str) -> float:
        """Sum of the samples of ``name`` whose labels include ``labels``."""
        total = 0.0
        for line in self.metrics_text().splitlines():
            if line.startswith("#") or not line.startswith(name):
                continue
            m = re.match(r"^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s+(\S+)$", line)
            if not m or m.group(1) != name:
                continue
            have = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', m.group(3) or ""))
            if all(have.get(k) == v for k, v in labels.items()):
                total += float(m.group(4))
        return total

    def worker_pids(self) -> list[int]:
        children = Path(f"/proc/{self.pid}/task/{self.pid}/children")
        try:
            return [int(p) for p in children.read_text().split()]
        except OSError:
            return []

    def worker_rss(self) -> int:
        """Resident bytes of the worker processes (VmRSS)."""
        total = 0
        for pid in self.worker_pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
        return total

    def access_lines(self) -> list[str]:
        return [line for line in self.output().splitlines() if "\trequest\t" in line or '"scope":"request"' in line]


def binds(port: int, routes: list[dict[str, Any]], **listener: Any) -> dict[str, Any]:
    """The smallest config with one bind, one listener and ``routes``."""
    return {"binds": [{"port": port, "listeners": [{**listener, "routes": routes}]}]}


@contextlib.contextmanager
def raw_connection(port: int, timeout: float = 5.0) -> Iterator[socket.socket]:
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        yield s
    finally:
        s.close()


class ResponseReader:
    """Reads HTTP/1.1 responses one after another from a raw socket, keeping leftover bytes for
    the next (pipelined) response."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise ConnectionError(f"connection closed; unread: {self.buf[:200]!r}")
        self.buf += data

    def read(self, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
        while b"\r\n\r\n" not in self.buf:
            self._fill()
        head, _, self.buf = self.buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ")[1])
        headers: dict[str, str] = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if head_only or status in (204, 304) or 100 <= status < 200:
            return status, headers, b""
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill()
            body, self.buf = self.buf[:n], self.buf[n:]
            return status, headers, body
        if headers.get("transfer-encoding") == "chunked":
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill()
                size_line, _, self.buf = self.buf.partition(b"\r\n")
                size = int(size_line, 16)
                while len(self.buf) < size + 2:
                    self._fill()
                chunk, self.buf = self.buf[:size], self.buf[size + 2 :]
                if size == 0:
                    return status, headers, body
                body += chunk
        while True:
            try:
                self._fill()
            except ConnectionError:
                body, self.buf = self.buf, b""
                return status, headers, body


def read_response(sock: socket.socket, head_only: bool = False) -> tuple[int, dict[str, str], bytes]:
    return ResponseReader(sock).read(head_only)


def wait_listening(proc: Process, port: int, what: str, timeout: float = 30.0) -> None:
    """Wait until ``proc`` accepts connections on 127.0.0.1:``port``; fail at once if it exits."""

    def listening() -> bool:
        if not proc.alive():
            raise RuntimeError(f"{what} exited with {proc.proc.returncode}:\n{proc.output()}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
        return False

    wait_for(listening, timeout, what)


class ServerProcess(Process):
    """Any program serving on 127.0.0.1:``port`` (told the port by its ``args`` or ``env``); ready
    once the port accepts connections."""

    def __init__(
        self,
        args: list[str],
        log_path: Path,
        port: int,
        env: dict[str, str] | None = None,
        what: str = "server",
        timeout: float = 30.0,
    ) -> None:
        self.port = port
        super().__init__(args, log_path, env)
        wait_listening(self, port, what, timeout)

    def endpoint(self, path: str = "/mcp") -> str:
        return f"http://127.0.0.1:{self.port}{path}"


class AuthzServer(ServerProcess):
    """The external authorizer of the tests (tests/support/extauthz.py), gRPC or HTTP, on a port
    of its own; what it was asked is in its output (``CHECK`` lines)."""

    def __init__(self, log_dir: Path, mode: str = "grpc") -> None:
        port = free_port()
        args = [sys.executable, "-m", "tests.support.extauthz", "--port", str(port), "--mode", mode]
        super().__init__(args, log_dir / f"authz-{mode}-{port}.log", port, what=f"{mode} authorizer")


class McpServerProcess(Process):
    """``tests.support.mcp_server`` over HTTP (streamable, path /mcp) or legacy SSE (path /sse)."""

    def __init__(self, tmp: Path, name: str, transport: str, port: int | None = None, tools: int = 0) -> None:
        self.name = name
        self.transport = transport
        self.port = port or free_port()
        args = [sys.executable, "-m", "tests.support.mcp_server", "--name", name, "--transport", transport]
        args += ["--port", str(self.port), "--tools", str(tools)]
        super().__init__(args, tmp / f"mcp-{name}-{self.port}.log")
        wait_listening(self, self.port, f"MCP server {name}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/{'mcp' if self.transport == 'http' else 'sse'}"


def python_stdio_target(name: str, module: str, *args: str) -> dict[str, Any]:
    """A target running ``python -m <module> <args>`` (a module of this repository) over stdio."""
    argv = ["-m", module, *args]
    return {"name": name, "stdio": {"cmd": sys.executable, "args": argv, "env": {"PYTHONPATH": str(REPO)}}}


def stdio_target(name: str, tools: int = 0) -> dict[str, Any]:
    """A target running ``tests.support.mcp_server`` over stdio."""
    return python_stdio_target(name, "tests.support.mcp_server", "--name", name, "--tools", str(tools))


def mcp_config(port: int, targets: list[dict[str, Any]], **backend: Any) -> dict[str, Any]:
    """One bind whose only route is an MCP backend federating ``targets``."""
    return binds(port, [{"name": "mcp", "backends": [{"mcp": {"targets": targets, **backend}}]}])
