"""What the ``http`` scenario measures: its targets, layouts and goals, and one measured run."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.procs import ManagedProcess
from benchmarks.wrk import WrkResult

NAME = "http"
BODY_SIZE = 1024
TARGETS = ("direct", "gateway", "gateway-2w", "floor", "nginx", "envoy")
# The worker-scaling target: the gateway with ``config.workers: 2``, its tree allowed on both CPUs.
TWO_WORKERS = "gateway-2w"

# The layout: the proxy alone on its core, wrk and the upstream on the other.
PINNED = "pinned"
# The proxy moved onto the load core for a c=1 run: no request crosses cores, so the added latency is
# the proxy's own and not the machine's cross-core wake-up cost (large on a VM).
ONE_CORE = "one-core"

LATENCY_CONNECTIONS = 1
SATURATION_CONNECTIONS = 32
# The goals for the gateway.
THROUGHPUT_RATIO_GOAL = 0.9  # req/s at c=32, relative to nginx
WORKER_SCALING_GOAL = 1.8  # req/s at c=32 of two workers, relative to one
ADDED_P50_BUDGET_US = 60.0  # p50 at c=1, over direct


@dataclass(frozen=True)
class Target:
    name: str
    port: int
    process: ManagedProcess | None  # None for direct: nothing between wrk and the upstream


@dataclass(frozen=True)
class Sample:
    """One measured wrk run and the CPU that each side used meanwhile."""

    target: str
    layout: str
    connections: int
    round: int
    wrk: WrkResult
    proxy_cpu_s: float | None  # the proxy's process tree; None for direct
    proxy_user_s: float | None  # the user-space part of proxy_cpu_s
    load_cpu_s: float  # wrk and the upstream
    other_cpu_s: float  # everything else on the machine (noise)
    attempts: int  # 1, or more when the run was repeated because other processes were busy

    @property
    def other_cpu_share(self) -> float:
        return self.other_cpu_s / self.wrk.duration_s if self.wrk.duration_s else 0.0
