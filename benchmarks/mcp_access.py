"""Scenario ``mcp-access``: what ``mcpAuthorization`` and tool pinning add to one ``tools/list``,
in-process (no servers).

Ten targets of fifty tools each (the raw results as an upstream sends them, ~250 bytes a tool)
merged into one list for one caller, as ``Federation.fan_out_list`` does:

- *merge only*: the native merge, no access control (the baseline);
- *authorization, first listing*: six rules (headers, JWT claims, ``mcp.tool``; allow, deny,
  require) evaluated for each of the 500 tools — a caller the worker has not seen list before;
- *authorization, cached*: the same caller listing again: one verdict-cache lookup per tool;
- *pinning, first sight*: every definition hashed and pinned (pins in memory);
- *pinning, unchanged list*: the same upstream results again (recognized by their bytes);
- *both, cached*: authorization and pinning together, the steady state.

Each figure includes what the gateway does per listing besides the merge: the caller's
fingerprint, the item keys, the ``allowed`` set, the session's tool digests.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import os
import shlex
import statistics
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from benchmarks import tools
from benchmarks.cel import CLAIMS, per_call_us
from benchmarks.procs import BenchmarkError
from benchmarks.report import RESULTS_PATH, Spread, markdown_table, write_section
from benchmarks.scenario import Scenario

NAME = "mcp-access"
TARGETS = 10
TOOLS = 50
RULES: list[str | dict[str, str]] = [
    "request.headers['x-user'] == 'root'",
    "jwt.sub == 'alice' && mcp.tool.target in ['t1', 't3', 't5']",
    "'admin' in jwt.groups && mcp.tool.name.startsWith('tool1')",
    "mcp.tool.name.endsWith('7')",
    {"deny": "mcp.tool.name == 'tool49'"},
    {"require": "request.headers['x-tenant'] != 'blocked'"},
]
EXPECTED_VISIBLE = 252  # what the rules let alice see of the 500
BUDGET_MS = 1.0  # for a caller seen before (a listing of 500 tools)


def _results() -> list[tuple[str, bytes]]:
    out = []
    for t in range(TARGETS):
        tools_ = [
            {
                "name": f"tool{j}",
                "description": f"Tool {j} of target t{t}: does one thing to a record and reports what it did.",
                "inputSchema": {
                    "type": "object",
                    "properties": {"id": {"type": "integer"}, "note": {"type": "string"}},
                    "required": ["id"],
                },
            }
            for j in range(TOOLS)
        ]
        out.append((f"t{t}", orjson.dumps({"tools": tools_})))
    return out


@dataclass(frozen=True)
class Target:
    name: str
    listing: Callable[[], bytes]


def targets() -> list[Target]:
    from agentgateway._native import merge_list_results
    from agentgateway.mcp.access import McpAccess
    from agentgateway.mcp.authorization import CURRENT_CALLER, Caller, McpAuthorization
    from agentgateway.mcp.pinning import PinStore, SessionTools, ToolPins
    from agentgateway.policy.cel import CelRuleSet
    from benchmarks.cel import make_ctx

    results = _results()
    rules = CelRuleSet.compile(RULES, "rules")
    by_target = {f"t{t}": rules for t in range(TARGETS)}

    class Session:  # what screen_list reads of a downstream session
        tools = SessionTools()

    session: Any = Session()

    def new_caller() -> None:
        ctx = make_ctx()
        ctx.cel_vars = {"jwt": CLAIMS}
        CURRENT_CALLER.set(Caller(ctx))  # one per request, as the endpoint does

    def merged(access: McpAccess | None) -> bytes:
        new_caller()
        shown, allowed = (
            (results, None) if access is None else access.screen_list(session, "tools", "tools/list", results)
        )
        return merge_list_results("tools", shown, prefix=True, allowed=allowed)

    def pins() -> ToolPins:
        return ToolPins("mcp", "hide", {}, True, PinStore())

    warm_authz = McpAccess(McpAuthorization(by_target, "mcp"), None)
    warm_pins = McpAccess(None, pins())
    warm_both = McpAccess(McpAuthorization(by_target, "mcp"), pins())
    out = [
        Target("merge only", lambda: merged(None)),
        Target("authorization, first listing", lambda: merged(McpAccess(McpAuthorization(by_target, "mcp"), None))),
        Target("authorization, cached", lambda: merged(warm_authz)),
        Target("pinning, first sight", lambda: merged(McpAccess(None, pins()))),
        Target("pinning, unchanged list", lambda: merged(warm_pins)),
        Target("both, cached", lambda: merged(warm_both)),
    ]
    for target in out:
        shown = orjson.loads(target.listing())["tools"]
        expected = (
            TARGETS * TOOLS if target.name in ("merge only",) or target.name.startswith("pinning") else EXPECTED_VISIBLE
        )
        if len(shown) != expected:
            raise BenchmarkError(f"{target.name}: {len(shown)} tools listed, expected {expected}")
    return out


@dataclass(frozen=True)
class Result:
    name: str
    ms: Spread


def measure(items: Sequence[Target], rounds: int, seconds: float) -> list[Result]:
    samples: dict[str, list[float]] = {t.name: [] for t in items}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(rounds):
            for target in items:
                value = per_call_us(target.listing, seconds) / 1000
                samples[target.name].append(value)
                print(f"round {round_ + 1}/{rounds}: {target.name}: {value:.3f} ms", file=sys.stderr)
    finally:
        if gc_was_enabled:
            gc.enable()
    return [Result(name, Spread(statistics.median(v), min(v), max(v))) for name, v in samples.items()]


def section(results: Sequence[Result], command: str, rounds: int, seconds: float, cpu: int | None) -> str:
    base = next(r for r in results if r.name == "merge only").ms.median
    rows = [
        [
            r.name,
            f"{r.ms.median:.3f} [{r.ms.low:.3f}…{r.ms.high:.3f}]",
            "–" if r.name == "merge only" else f"{r.ms.median - base:.3f}",
            f"{(r.ms.median - base) * 1000 / (TARGETS * TOOLS):.2f}",
        ]
        for r in results
    ]
    header = ["target", "ms per listing [min…max]", "ms added", "µs added per tool"]
    cached = next(r for r in results if r.name == "both, cached").ms.median - base
    rules = "\n".join(f"  - `{rule}`" for rule in RULES)
    lines = [
        f"## {NAME} — mcpAuthorization and tool pinning on one tools/list, in-process",
        "",
        f"One `tools/list` of {TARGETS} targets × {TOOLS} tools merged for one caller (12 headers, 8 JWT "
        "claims), as the gateway does it: the per-target results as upstreams send them, the native "
        "merge, and for the access targets the caller's fingerprint, the item keys, the rules or the "
        "pins, the `allowed` set and the session's tool digests. *first listing* is a caller the worker "
        "has not seen list (every rule evaluated for every tool); *cached* the same caller again "
        "(verdicts cached per worker by what the rules read of the caller). *first sight* hashes and "
        "pins every definition; *unchanged list* gets the same upstream bytes again.",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {tools.machine_summary()}",
        f"- Versions: gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()}), "
        f"Python {tools.python_version()}",
        f"- Pinning: {'CPU ' + str(cpu) if cpu is not None else 'none'}; garbage collector off while timing",
        f"- Load: {rounds} interleaved round(s) of about {seconds:g} s per target; medians, [min…max] rounds",
        "- Rules (alice sees 252 of the 500 tools):",
        rules,
        "",
        markdown_table(header, rows),
        "",
        f"- Steady state (authorization and pinning, a caller seen before) ≤ {BUDGET_MS:g} ms added per "
        f"listing of 500 tools: **{'met' if cached <= BUDGET_MS else 'not met'}** — {cached:.3f} ms.",
    ]
    return "\n".join(lines) + "\n"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians (5)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per target and round (1)")
    parser.add_argument("--quick", action="store_true", help="1 round of 0.3 s; prints only, RESULTS.md left alone")
    parser.add_argument("--cpu", type=int, default=1, help="CPU to pin to (1; -1: no pinning)")
    parser.add_argument("--no-results", action="store_true", help="print the table, do not touch RESULTS.md")
    parser.add_argument("--results", type=Path, default=RESULTS_PATH, help="results file (benchmarks/RESULTS.md)")


def run(args: argparse.Namespace) -> int:
    rounds, seconds = (1, 0.3) if args.quick else (args.rounds, args.seconds)
    if rounds < 1 or seconds <= 0:
        raise BenchmarkError("--rounds must be at least 1 and --seconds positive")
    cpu: int | None = args.cpu if args.cpu >= 0 else None
    if cpu is not None:
        if cpu not in os.sched_getaffinity(0):
            raise BenchmarkError(f"CPU {cpu} not usable here (usable: {sorted(os.sched_getaffinity(0))}); pass --cpu")
        os.sched_setaffinity(0, {cpu})
    results = measure(targets(), rounds, seconds)
    command = " ".join(["python -m benchmarks", *map(shlex.quote, sys.argv[1:])])
    text = section(results, command, rounds, seconds, cpu)
    print(text)
    if not (args.quick or args.no_results):
        write_section(NAME, text, args.results)
        print(f"wrote the {NAME} section of {args.results}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary="ms that mcpAuthorization and tool pinning add to a tools/list of 10 × 50 tools",
    add_arguments=add_arguments,
    run=run,
)
