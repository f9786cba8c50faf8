"""What a scenario is, and the run options every scenario shares (duration, rounds, CPUs, ports)."""

from __future__ import annotations

import argparse
import os
import shlex
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from benchmarks.procs import BenchmarkError
from benchmarks.report import RESULTS_PATH

WORK_ROOT = Path(__file__).resolve().parent / ".work"


@dataclass(frozen=True)
class Scenario:
    """An entry of the ``python -m benchmarks`` registry; ``name`` is also its RESULTS.md heading."""

    name: str
    summary: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]


@dataclass(frozen=True)
class RunOptions:
    duration_s: int
    warmup_s: int
    rounds: int
    load_cpu: int
    proxy_cpu: int
    base_port: int
    max_other_share: float  # CPU (in cores) other processes may use during a run before it is repeated
    noisy_retries: int
    results_path: Path | None  # None: print only, leave RESULTS.md alone
    work_dir: Path
    command: str


def add_run_options(
    parser: argparse.ArgumentParser, *, default_base_port: int, default_duration: int = 10, default_warmup: int = 3
) -> None:
    parser.add_argument(
        "--duration",
        type=int,
        default=default_duration,
        metavar="S",
        help=f"seconds per measured run ({default_duration})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=default_warmup,
        metavar="S",
        help=f"seconds of warm-up before each ({default_warmup})",
    )
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; figures are medians (3)")
    parser.add_argument(
        "--quick",
        action="store_true",
        help="smoke run: 1 round of 3 s after 1 s warm-up; prints only, RESULTS.md is left alone",
    )
    parser.add_argument("--load-cpu", type=int, default=0, help="CPU for wrk and the upstream (0)")
    parser.add_argument("--proxy-cpu", type=int, default=1, help="CPU for the proxy under test (1)")
    parser.add_argument(
        "--base-port",
        type=int,
        default=default_base_port,
        help=f"first of the ports used ({default_base_port})",
    )
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=10.0,
        metavar="PCT",
        help="repeat a run during which other processes used more than PCT%% of a core (10)",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="how often one noisy run may be repeated (2; 0: never)"
    )
    parser.add_argument("--no-results", action="store_true", help="print the table, do not touch RESULTS.md")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_PATH, help="results file (benchmarks/RESULTS.md)"
    )


def run_options(args: argparse.Namespace, scenario: str) -> RunOptions:
    duration, warmup, rounds = (3, 1, 1) if args.quick else (args.duration, args.warmup, args.rounds)
    if duration < 1 or warmup < 0 or rounds < 1 or args.retries < 0:
        raise BenchmarkError("--duration and --rounds must be at least 1, --warmup and --retries at least 0")
    check_cpus(args.load_cpu, args.proxy_cpu)
    keep_results = not (args.quick or args.no_results)
    return RunOptions(
        duration_s=duration,
        warmup_s=warmup,
        rounds=rounds,
        load_cpu=args.load_cpu,
        proxy_cpu=args.proxy_cpu,
        base_port=args.base_port,
        max_other_share=args.max_other_cpu / 100,
        noisy_retries=args.retries,
        results_path=args.results if keep_results else None,
        work_dir=WORK_ROOT / scenario,
        command=" ".join(["python -m benchmarks", *map(shlex.quote, sys.argv[1:])]),
    )


def check_cpus(load_cpu: int, proxy_cpu: int) -> None:
    usable = os.sched_getaffinity(0)
    missing = sorted({load_cpu, proxy_cpu} - usable)
    if missing:
        raise BenchmarkError(
            f"CPU {', '.join(map(str, missing))} not usable here (usable: {sorted(usable)}); "
            "pass --load-cpu/--proxy-cpu"
        )
    if load_cpu == proxy_cpu:
        print(
            f"warning: load and proxy share CPU {load_cpu}; figures will not be comparable to pinned runs",
            file=sys.stderr,
        )
