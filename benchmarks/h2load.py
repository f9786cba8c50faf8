"""Running h2load (Debian's ``nghttp2-client``), the HTTP/2 load generator of the ``http2`` and
``grpc`` scenarios, and reading its results: request rate from its summary, latency percentiles
from its per-request log (the summary has only min/max/mean)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import BenchmarkError, pinned, run_bounded

_FINISHED = re.compile(r"finished in ([\d.]+)(m?s), ([\d.]+) req/s")
_REQUESTS = re.compile(
    r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored"
)
_STATUS = re.compile(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx")


@dataclass(frozen=True)
class H2loadResult:
    requests_per_second: float
    duration_s: float
    succeeded: int
    errors: int  # failed or errored requests, and answers that were not 2xx
    p50_us: float
    p99_us: float


def percentile(sorted_values: Sequence[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    index = min(len(sorted_values) - 1, max(0, round(fraction * (len(sorted_values) - 1))))
    return sorted_values[index]


def parse(output: str, log_path: Path, warmup_s: float) -> H2loadResult:
    finished = _FINISHED.search(output)
    requests = _REQUESTS.search(output)
    status = _STATUS.search(output)
    if finished is None or requests is None or status is None:
        raise BenchmarkError(f"unexpected h2load output:\n{output.strip()}")
    duration = float(finished.group(1)) / (1000.0 if finished.group(2) == "ms" else 1.0)
    failed, errored = int(requests.group(5)), int(requests.group(6))
    not_2xx = sum(int(status.group(i)) for i in (2, 3, 4))
    # The log has one line per request: start (µs since the epoch), status, duration (µs).
    # Requests of the warm-up are in it too: only those that started after it are counted.
    rows = []
    for line in log_path.read_text().splitlines():
        fields = line.split("\t")
        if len(fields) >= 3:
            rows.append((int(fields[0]), int(fields[2])))
    first = min((start for start, _ in rows), default=0)
    measured = sorted(float(d) for start, d in rows if start >= first + warmup_s * 1e6) or sorted(
        float(d) for _, d in rows
    )
    return H2loadResult(
        requests_per_second=float(finished.group(3)),
        duration_s=duration,
        succeeded=int(requests.group(4)),
        errors=failed + errored + not_2xx,
        p50_us=percentile(measured, 0.50),
        p99_us=percentile(measured, 0.99),
    )


def run_h2load(
    h2load: str,
    url: str,
    *,
    connections: int,
    streams: int,
    seconds: int,
    warmup_s: int,
    cpu: int,
    log_path: Path,
    data_file: Path | None = None,
    headers: Sequence[str] = (),
) -> H2loadResult:
    """``connections`` connections with ``streams`` concurrent streams each, one thread, pinned."""
    argv = [
        h2load,
        "--clients", str(connections),
        "--max-concurrent-streams", str(streams),
        "--threads", "1",
        "--duration", str(seconds),
        "--warm-up-time", str(warmup_s),
        "--log-file", str(log_path),
    ]  # fmt: skip
    if data_file is not None:
        argv += ["--data", str(data_file)]
    for header in headers:
        argv += ["--header", header]
    argv.append(url)
    output = run_bounded(pinned(argv, cpu), timeout=seconds + warmup_s + 60)
    return parse(output, log_path, warmup_s)


def h2load_version(h2load: str) -> str:
    try:
        return run_bounded([h2load, "--version"], timeout=30).strip().splitlines()[0]
    except BenchmarkError:
        return "h2load (version unknown)"
