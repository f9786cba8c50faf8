"""Processes a benchmark starts: pinned to a CPU, in their own process group, always reaped.

Every server runs in a new session so that one ``killpg`` reaches its whole tree (the gateway's workers,
nginx's worker) and so that Ctrl-C in the terminal reaches only the harness, which then stops them in
order. Resource figures come from ``/proc`` so that they cover every process of a server's tree.
"""

from __future__ import annotations

import contextlib
import http.client
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, TypeVar

CLOCK_TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")
STOP_GRACE_SECONDS = 10.0
POLL_INTERVAL_SECONDS = 0.05


class BenchmarkError(RuntimeError):
    """A failure the harness explains to the user in one message (no traceback)."""


@dataclass
class ManagedProcess:
    """A server started by the harness; ``pid`` is both its process id and its process-group id."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exited(self) -> bool:
        return self.popen.poll() is not None

    def log_tail(self, max_bytes: int = 2000) -> str:
        try:
            data = self.log_path.read_bytes()
        except OSError:
            return ""
        return data[-max_bytes:].decode(errors="replace").strip()


def pinned(argv: Sequence[str], cpu: int | str) -> list[str]:
    """Wrap a command in ``taskset``: the affinity is set before exec, so every child inherits it."""
    return ["taskset", "--cpu-list", str(cpu), *argv]


def _launch(
    name: str,
    argv: Sequence[str],
    *,
    cpu: int | str,
    log_dir: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ManagedProcess:
    log_path = log_dir / f"{name}.log"
    with log_path.open("wb") as log:
        # The child keeps its own copy of the descriptor; closing ours right away is fine.
        popen = subprocess.Popen(
            pinned(argv, cpu),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env=env,
            cwd=cwd,
        )
    return ManagedProcess(name=name, popen=popen, log_path=log_path)


class ProcessSet:
    """The servers of one run. Leaving the ``with`` block stops them all, newest first, however it is
    left (error, Ctrl-C), so a server that fails to come up is stopped too."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.processes: list[ManagedProcess] = []

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        cpu: int | str,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> ManagedProcess:
        """Start a pinned server (``cpu``: one CPU, or a ``taskset`` CPU list such as ``0,1``);
        ``env`` replaces the environment when given (None: inherit ours)."""
        process = _launch(name, argv, cpu=cpu, log_dir=self.log_dir, env=env, cwd=cwd)
        self.processes.append(process)
        return process

    def stop_all(self) -> None:
        while self.processes:
            stop_process(self.processes.pop())

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def stop_process(process: ManagedProcess, grace: float = STOP_GRACE_SECONDS) -> None:
    """SIGTERM the group, wait a bounded time, then SIGKILL whatever is left of it (orphans included)."""
    _signal_group(process.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=grace)
    # A leader that exited may leave children (a gateway worker whose supervisor died): kill the group.
    _signal_group(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.popen.wait(timeout=grace)


def run_bounded(argv: Sequence[str], *, timeout: float) -> str:
    """Run a short-lived command (wrk) in its own group; kill the group on timeout or interruption."""
    popen = subprocess.Popen(
        argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        out, _ = popen.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchmarkError(f"{argv[0]} did not finish within {timeout:.0f} s: {' '.join(argv)}") from exc
    finally:
        if popen.poll() is None:
            _signal_group(popen.pid, signal.SIGKILL)
            popen.wait(timeout=STOP_GRACE_SECONDS)
    text = out.decode(errors="replace")
    if popen.returncode != 0:
        raise BenchmarkError(f"{' '.join(argv)} exited with {popen.returncode}:\n{text.strip()}")
    return text


# --- /proc readings ---------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat after the command name (which may itself hold spaces or parens)."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def _all_parents() -> dict[int, int]:
    parents: dict[int, int] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ValueError, IndexError):
            # After the name: state, ppid, ...
            parents[int(entry.name)] = int(_stat_fields(int(entry.name))[1])
    return parents


def process_tree(root: int) -> list[int]:
    """The root and all its live descendants, found through parent ids (one scan of /proc)."""
    children: dict[int, list[int]] = {}
    for pid, ppid in _all_parents().items():
        children.setdefault(ppid, []).append(pid)
    tree: list[int] = []
    pending = [root]
    while pending:
        pid = pending.pop()
        tree.append(pid)
        pending.extend(children.get(pid, ()))
    return tree


def cpu_seconds(pids: Iterable[int]) -> float:
    """utime + stime of the given processes (all their threads), in seconds."""
    user, system = user_system_seconds(pids)
    return user + system


def user_system_seconds(pids: Iterable[int]) -> tuple[float, float]:
    """(utime, stime) of the given processes (all their threads), in seconds: user-space work and
    kernel work (for a proxy mostly socket I/O) apart."""
    user = system = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            fields = _stat_fields(pid)
            # Fields 14 and 15 of stat(5); the list starts at field 3 (state).
            user += int(fields[11])
            system += int(fields[12])
    return user / CLOCK_TICKS_PER_SECOND, system / CLOCK_TICKS_PER_SECOND


def peak_rss_bytes(pids: Iterable[int]) -> int:
    """Sum of VmHWM (each process's peak resident set) over the given processes."""
    total = 0
    for pid in pids:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) * 1024
    return total


def busy_cpu_seconds() -> float:
    """Non-idle time of all CPUs since boot (/proc/stat: user, nice, system, irq, softirq, steal).

    Compared with the CPU time of the processes a run measures, it shows how much else ran meanwhile:
    another user's tests, or the hypervisor taking the CPU away (steal)."""
    with open("/proc/stat") as stat:
        fields = stat.readline().split()
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(value) for value in fields[1:9])
    return (user + nice + system + irq + softirq + steal) / CLOCK_TICKS_PER_SECOND


def affinity(pid: int) -> set[int]:
    return os.sched_getaffinity(pid)


def pin_tree(root: int, cpu: int) -> None:
    """Move every thread of every process in the tree onto ``cpu`` (affinity is per thread)."""
    for pid in process_tree(root):
        with contextlib.suppress(FileNotFoundError):
            for task in os.scandir(f"/proc/{pid}/task"):
                with contextlib.suppress(ProcessLookupError):
                    os.sched_setaffinity(int(task.name), {cpu})


def wait_for_quiet(max_share: float, timeout: float) -> bool:
    """Wait, bounded, for a one-second window in which the machine is nearly idle.

    Called between runs, when the servers of the run are idle too, so what it sees is other work."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        before = busy_cpu_seconds()
        time.sleep(1.0)
        if busy_cpu_seconds() - before <= max_share:
            return True
    return False


class _NoisySample(Protocol):
    @property
    def other_cpu_share(self) -> float: ...


_Sample = TypeVar("_Sample", bound=_NoisySample)

# How long to wait for a quiet machine before repeating a noisy run.
QUIET_WAIT_SECONDS = 30.0


def measure_quietly(
    run: Callable[[], _Sample], progress: Callable[[_Sample], None], max_share: float, retries: int
) -> tuple[_Sample, int]:
    """One measured run, and how many attempts it took: a run during which other processes took
    more than ``max_share`` of a core is repeated after a quiet moment, at most ``retries`` times."""
    attempt = 1
    while True:
        sample = run()
        progress(sample)
        if sample.other_cpu_share <= max_share or attempt > retries:
            return sample, attempt
        attempt += 1
        print("    other processes were busy; waiting for a quiet moment, then repeating", file=sys.stderr)
        wait_for_quiet(max_share, QUIET_WAIT_SECONDS)


# --- ports and readiness ----------------------------------------------------------------------------


def port_is_free(port: int, host: str = "127.0.0.1") -> bool:
    # SO_REUSEADDR as the servers use it: a port in TIME_WAIT is usable, a listening one is not.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def require_free_ports(ports: Iterable[int]) -> None:
    busy = [port for port in ports if not port_is_free(port)]
    if busy:
        raise BenchmarkError(
            f"ports in use on 127.0.0.1: {', '.join(map(str, busy))}; stop what holds them or pass --base-port"
        )


def http_get(
    url_host: str, port: int, path: str = "/", timeout: float = 2.0, headers: Mapping[str, str] | None = None
) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(url_host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers=dict(headers or {}))
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def wait_until(check: Callable[[], bool], *, what: str, process: ManagedProcess, timeout: float = 30.0) -> None:
    """Poll ``check`` until it holds; fail early with the log tail if the process died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.exited():
            raise BenchmarkError(
                f"{process.name} exited with {process.popen.returncode} before {what}; "
                f"log {process.log_path}:\n"
                f"{process.log_tail()}"
            )
        with contextlib.suppress(OSError, http.client.HTTPException):
            if check():
                return
        time.sleep(POLL_INTERVAL_SECONDS)
    raise BenchmarkError(
        f"{process.name}: no {what} within {timeout:.0f} s; log {process.log_path}:\n{process.log_tail()}"
    )
