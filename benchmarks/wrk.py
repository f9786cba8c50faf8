"""Run wrk and read its results exactly.

wrk's text report rounds latencies to two decimals of a scaled unit (``1.23ms`` hides 10 µs); its Lua
``done`` hook sees the raw histogram in microseconds, so the harness asks for a single machine-readable
line from it and keeps wrk's own report (``--latency``) in a log file for people to read.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import BenchmarkError, pinned, run_bounded

RESULT_MARKER = "BENCH-RESULT"

# Lua 5.1 / LuaJIT: numbers are doubles, so every value is printed with %.1f and parsed as float.
DONE_SCRIPT = f"""\
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "{RESULT_MARKER} requests=%.1f duration_us=%.1f bytes=%.1f connect=%.1f read=%.1f write=%.1f "
    .. "status=%.1f timeout=%.1f p50_us=%.1f p90_us=%.1f p99_us=%.1f mean_us=%.1f max_us=%.1f\\n",
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean, latency.max))
end
"""

# wrk itself may take a moment past --duration to close sockets and run the script.
EXTRA_SECONDS = 30.0


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    errors: int
    p50_us: float
    p90_us: float
    p99_us: float
    mean_us: float
    max_us: float

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.duration_s if self.duration_s > 0 else 0.0


def write_script(work_dir: Path) -> Path:
    path = work_dir / "wrk-done.lua"
    path.write_text(DONE_SCRIPT)
    return path


def parse_result(output: str) -> WrkResult:
    line = next((ln for ln in output.splitlines() if ln.startswith(RESULT_MARKER)), None)
    if line is None:
        raise BenchmarkError(f"wrk printed no {RESULT_MARKER} line:\n{output.strip()}")
    values = {key: float(value) for key, value in (item.split("=", 1) for item in line.split()[1:])}
    errors = sum(values[key] for key in ("connect", "read", "write", "status", "timeout"))
    return WrkResult(
        requests=int(values["requests"]),
        duration_s=values["duration_us"] / 1e6,
        errors=int(errors),
        p50_us=values["p50_us"],
        p90_us=values["p90_us"],
        p99_us=values["p99_us"],
        mean_us=values["mean_us"],
        max_us=values["max_us"],
    )


def run_wrk(
    wrk: str, url: str, *, connections: int, seconds: float, cpu: int, script: Path, log_path: Path | None
) -> WrkResult:
    """One wrk run with one thread (the load generator gets one core), pinned to ``cpu``."""
    output = wrk_output(
        wrk, url, connections=connections, seconds=seconds, cpu=cpu, script=script, log_path=log_path
    )
    return parse_result(output)


def wrk_output(
    wrk: str, url: str, *, connections: int, seconds: float, cpu: int, script: Path, log_path: Path | None
) -> str:
    """What ``run_wrk`` runs, returning wrk's whole output: for scripts that print more lines."""
    argv = [
        wrk,
        "--threads", "1",
        "--connections", str(connections),
        "--duration", f"{seconds:g}s",
        "--timeout", "5s",
        "--latency",
        "--script", str(script),
        url,
    ]  # fmt: skip
    output = run_bounded(pinned(argv, cpu), timeout=seconds + EXTRA_SECONDS)
    if log_path is not None:
        log_path.write_text(output)
    return output
