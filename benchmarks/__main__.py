"""``python -m benchmarks <scenario> [options]``: run one scenario, print its table, update RESULTS.md.

A new scenario is a module exposing a ``Scenario`` and one line in ``SCENARIOS`` below.
"""

from __future__ import annotations

import argparse
import signal
import sys
from types import FrameType

from benchmarks import authz, cel, grpc_unary, http, http2, llm, mcp, mcp_access, mcp_sessions, policies, tracing
from benchmarks.procs import BenchmarkError
from benchmarks.scenario import Scenario

SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        http.SCENARIO,
        http2.SCENARIO,
        grpc_unary.SCENARIO,
        policies.SCENARIO,
        cel.SCENARIO,
        authz.SCENARIO,
        mcp.SCENARIO,
        mcp_access.SCENARIO,
        mcp_sessions.SCENARIO,
        llm.SCENARIO,
        tracing.SCENARIO,
    )
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="Run a scenario side by side with its peers; record it in benchmarks/RESULTS.md.",
    )
    commands = parser.add_subparsers(dest="scenario", required=True, metavar="SCENARIO")
    for scenario in SCENARIOS.values():
        # argparse %-formats help texts: a summary's "100%" would fail --help.
        text = scenario.summary.replace("%", "%%")
        sub = commands.add_parser(scenario.name, help=text, description=text)
        scenario.add_arguments(sub)
    return parser


def _terminate(signum: int, frame: FrameType | None) -> None:
    # Turn SIGTERM/SIGHUP into an exception so that every ``with`` block stops the servers it started.
    raise KeyboardInterrupt(signal.Signals(signum).name)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _terminate)
    try:
        return SCENARIOS[args.scenario].run(args)
    except BenchmarkError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; every server this run started has been stopped", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
