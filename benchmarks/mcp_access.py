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
import os
import shlex
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson

from benchmarks import tools
from benchmarks.cel import CLAIMS, Result, Target, measure
from benchmarks.procs import BenchmarkError
from benchmarks.report import RESULTS_PATH, markdown_table, write_section
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
        raw = target.evaluate()
        assert isinstance(raw, bytes)
        shown = orjson.loads(raw)["tools"]
        expected = (
            TARGETS * TOOLS if target.name in ("merge only",) or target.name.startswith("pinning") else EXPECTED_VISIBLE
        )
        if len(shown) != expected:
            raise BenchmarkError(f"{target.name}: {len(shown)} tools listed, expected {expected}")
    return out


def section(
    results: Sequence[Result],
    command: str,
    rounds: int,
    seconds: float,
    cpu: int | None,
    max_other: float,
    retries: int,
) -> str:
    base = next(r for r in results if r.name == "merge only").us.median / 1000
    rows = []
    for r in results:
        ms = r.us.median / 1000
        rows.append(
            [
                r.name,
                f"{ms:.3f} [{r.us.low / 1000:.3f}…{r.us.high / 1000:.3f}]",
                "–" if r.name == "merge only" else f"{ms - base:.3f}",
                f"{(ms - base) * 1000 / (TARGETS * TOOLS):.2f}",
                f"{r.other_share_max * 100:.0f}",
                str(r.repeated),
            ]
        )
    header = ["target", "ms per listing [min…max]", "ms added", "µs added per tool", "other CPU % max", "repeated"]
    cached = next(r for r in results if r.name == "both, cached").us.median / 1000 - base
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
        f"- Load: {rounds} interleaved round(s) of about {seconds:g} s per target; medians, [min…max] rounds. "
        f"A round during which other processes used more than {max_other * 100:g}% of a core is measured "
        f"again after waiting for a quiet moment (at most {retries} times)",
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
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=10.0,
        metavar="PCT",
        help="measure a round again when other processes used more than PCT%% of a core (10)",
    )
    parser.add_argument("--retries", type=int, default=2, help="how often one round may be measured again (2)")
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
    max_other, retries = args.max_other_cpu / 100, max(0, args.retries)
    results = measure(targets(), rounds, seconds, max_other, retries)
    command = " ".join(["python -m benchmarks", *map(shlex.quote, sys.argv[1:])])
    text = section(results, command, rounds, seconds, cpu, max_other, retries)
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
