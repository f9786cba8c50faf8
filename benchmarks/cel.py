"""Scenario ``cel``: what authorization rules cost per request, in-process (no servers).

Ten typical rules (header, JWT claim, path, method and CIDR checks: two ``deny``, one
``require``, seven ``allow``) against one request that only the last ``allow`` rule lets
through, so every rule is evaluated. Each evaluation starts from a ``RequestCtx`` and the JWT
claims dict, as the gateway's authorization phase will, and builds the CEL context too.

Targets, interleaved round after round:

- *gateway*: ``CelRuleSet.evaluate(ctx, {"jwt": claims})`` (agentgateway.policy.cel, native).
- *gateway, context only*: rules that read the same variables but decide at once (``true ||
  ...``), i.e. the facade, the native call and building the context; the rest of *gateway*
  is evaluating the ten rules.
- *cel-python*: the pure-Python ``cel-python`` package (``celpy``), when installed (``make
  bench`` installs it): the activation built from the same ``RequestCtx`` (headers decoded and
  joined) and the ten compiled programs evaluated with the same rule semantics; ``cidr()`` and
  ``containsIP()`` added as Python functions, as it has no IP library.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import ipaddress
import os
import shlex
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks import procs, tools
from benchmarks.procs import BenchmarkError
from benchmarks.report import RESULTS_PATH, Spread, markdown_table, write_section
from benchmarks.scenario import Scenario

NAME = "cel"

RULES: list[str | dict[str, str]] = [
    {"deny": "request.headers['x-tenant'] == 'blocked'"},
    {"deny": "!cidr('10.0.0.0/8').containsIP(source.address)"},
    {"require": "has(jwt.sub)"},
    "request.method == 'POST' && request.path.startsWith('/api/')",
    "jwt.sub == 'bob' && 'admin' in jwt.groups",
    "request.headers['x-user'] == 'root'",
    "request.path.matches('^/admin/')",
    "jwt.iss == 'https://idp.example.com' && jwt.aud == 'admin'",
    "request.method in ['PUT', 'DELETE'] && request.host.endsWith('.example.com')",
    "jwt.groups.exists(g, g == 'dev') && request.headers['x-user'] == jwt.sub",
]
# What RULES read (variables, request fields, header names), deciding at once: what is left is
# building the context.
CONTEXT_ONLY = [
    "true || request.headers['x-tenant'] + request.headers['x-user'] + request.method + request.path"
    " + request.host == '' || jwt.sub == '' || source.port > 0"
]

CLAIMS: dict[str, object] = {
    "iss": "https://idp.example.com",
    "sub": "alice",
    "aud": "gateway",
    "exp": 1900000000,
    "iat": 1700000000,
    "email": "alice@example.com",
    "groups": ["dev", "admin"],
    "scope": "openid profile",
}
HEADERS = [
    (b"host", b"api.example.com"),
    (b"user-agent", b"curl/8.5.0"),
    (b"accept", b"*/*"),
    (b"accept-encoding", b"gzip, br"),
    (b"authorization", b"Bearer eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJl"),
    (b"content-type", b"application/json"),
    (b"content-length", b"42"),
    (b"x-request-id", b"4f2c9a71-0d5e-4b7e-9a55-1f0c2e8d9b10"),
    (b"x-forwarded-for", b"203.0.113.7"),
    (b"x-user", b"alice"),
    (b"x-tenant", b"acme"),
    (b"traceparent", b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
]
EXPECTED_RULE = 9  # the request is allowed by the last rule
QUIET_WAIT_SECONDS = 30.0
BUDGET_US = 5.0


def make_ctx() -> Any:
    from agentgateway.core.context import RequestCtx

    return RequestCtx(
        b"GET",
        b"/api/v1/items?limit=5",
        b"/api/v1/items",
        b"limit=5",
        b"api.example.com",
        list(HEADERS),
        "1.1",
        True,
        42,
        False,
        False,
        "10.1.2.3",
        40000,
        b"https",
        0.0,
        "bench",
    )


# --- the targets ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    name: str
    evaluate: Callable[[], object]
    """One evaluation, everything per request included."""


def gateway_targets() -> list[Target]:
    from agentgateway.policy.cel import CelRuleSet

    ctx = make_ctx()
    rules = CelRuleSet.compile(RULES, "rules")
    decision = rules.evaluate(ctx, {"jwt": CLAIMS})
    if (decision.allowed, decision.rule) != (True, EXPECTED_RULE):
        raise BenchmarkError(f"the rules decided {decision}, expected allow by rule {EXPECTED_RULE}")
    context_only = CelRuleSet.compile(CONTEXT_ONLY, "rules")
    return [
        Target("gateway", lambda: rules.evaluate(ctx, {"jwt": CLAIMS})),
        Target("gateway, context only", lambda: context_only.evaluate(ctx, {"jwt": CLAIMS})),
    ]


def celpy_target() -> Target | None:
    """cel-python with the same rules and semantics, or None when it is not installed."""
    try:
        import celpy
    except ImportError:
        return None

    def cidr(text: Any) -> Any:
        return ipaddress.ip_network(str(text), strict=False)

    def contains_ip(network: Any, address: Any) -> Any:
        return celpy.celtypes.BoolType(ipaddress.ip_address(str(address)) in network)

    env = celpy.Environment()
    functions = {"cidr": cidr, "containsIP": contains_ip}
    programs: list[tuple[str, Any]] = []
    for rule in RULES:
        kind, source = ("allow", rule) if isinstance(rule, str) else next(iter(rule.items()))
        programs.append((kind, env.program(env.compile(source), functions=functions)))
    ctx = make_ctx()

    def holds(program: Any, activation: dict[str, Any]) -> bool:
        try:
            value = program.evaluate(activation)
        except celpy.CELEvalError:
            return False
        return isinstance(value, celpy.celtypes.BoolType) and bool(value)

    def evaluate() -> int:
        headers: dict[str, str] = {}
        for name, value in ctx.headers:
            key, text = name.decode(), value.decode("utf-8", "replace")
            headers[key] = f"{headers[key]},{text}" if key in headers else text
        request = {
            "method": ctx.method.decode(),
            "path": ctx.path.decode(),
            "host": ctx.host.decode(),
            "scheme": ctx.scheme.decode(),
            "pathAndQuery": ctx.target.decode(),
            "headers": headers,
        }
        activation = {
            "request": celpy.json_to_cel(request),
            "source": celpy.json_to_cel({"address": ctx.client_ip, "port": ctx.client_port}),
            "jwt": celpy.json_to_cel(CLAIMS),
        }
        results = [(kind, holds(program, activation)) for kind, program in programs]
        for i, (kind, result) in enumerate(results):
            if kind == "deny" and result:
                return i
        for i, (kind, result) in enumerate(results):
            if kind == "require" and not result:
                return i
        for i, (kind, result) in enumerate(results):
            if kind == "allow" and result:
                return i
        return -2

    decided = evaluate()
    if decided != EXPECTED_RULE:
        raise BenchmarkError(f"cel-python decided by rule {decided}, expected {EXPECTED_RULE}")
    return Target("cel-python", evaluate)


# --- measuring -------------------------------------------------------------------------------------


def per_call_us(call: Callable[[], object], seconds: float) -> float:
    """µs per call over a loop of about ``seconds``, the loop's own cost left in (≈0.03 µs)."""
    count = 1
    while True:  # calibrate: grow the count until one batch takes a tenth of the time
        started = time.perf_counter()
        for _ in range(count):
            call()
        elapsed = time.perf_counter() - started
        if elapsed >= seconds / 10:
            break
        count *= 4
    batch = max(1, int(count * seconds / max(elapsed, 1e-9)))
    started = time.perf_counter()
    for _ in range(batch):
        call()
    return (time.perf_counter() - started) / batch * 1e6


@dataclass(frozen=True)
class Result:
    name: str
    us: Spread
    other_share_max: float  # the most CPU (in cores) anything else used during one of its rounds
    repeated: int  # rounds measured again because the machine was busy


def timed(call: Callable[[], object], seconds: float) -> tuple[float, float]:
    """µs per call, and how much CPU (in cores) other processes used meanwhile."""
    busy, own, started = procs.busy_cpu_seconds(), time.process_time(), time.monotonic()
    value = per_call_us(call, seconds)
    wall = time.monotonic() - started
    other = (procs.busy_cpu_seconds() - busy) - (time.process_time() - own)
    return value, max(0.0, other / wall)


def measure(
    targets: Sequence[Target], rounds: int, seconds: float, max_other: float, retries: int
) -> list[Result]:
    samples: dict[str, list[float]] = {t.name: [] for t in targets}
    noise: dict[str, list[float]] = {t.name: [] for t in targets}
    repeated = dict.fromkeys(samples, 0)
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for round_ in range(rounds):
            for target in targets:
                value, other = timed(target.evaluate, seconds)
                for _ in range(retries):
                    if other <= max_other:
                        break
                    procs.wait_for_quiet(max_other, QUIET_WAIT_SECONDS)
                    value, other = timed(target.evaluate, seconds)
                    repeated[target.name] += 1
                samples[target.name].append(value)
                noise[target.name].append(other)
                others = f"others {other * 100:.0f}% of a core"
                print(
                    f"round {round_ + 1}/{rounds}: {target.name}: {value:.2f} µs ({others})", file=sys.stderr
                )
    finally:
        if gc_was_enabled:
            gc.enable()
    return [
        Result(name, Spread(statistics.median(v), min(v), max(v)), max(noise[name]), repeated[name])
        for name, v in samples.items()
    ]


# --- report ----------------------------------------------------------------------------------------


def table(results: Sequence[Result]) -> str:
    by_name = {r.name: r for r in results}
    gateway = by_name["gateway"].us.median
    rows = []
    for r in results:
        per_rule = "–"
        if r.name in ("gateway", "cel-python"):
            base = by_name["gateway, context only"].us.median if r.name == "gateway" else 0.0
            per_rule = (
                f"{(r.us.median - base) / len(RULES):.2f}"
                if r.name == "gateway"
                else f"{r.us.median / len(RULES):.1f}"
            )
        ratio = f"{r.us.median / gateway:.1f}×" if r.name == "cel-python" else "–"
        spread = f"{r.us.median:.2f} [{r.us.low:.2f}…{r.us.high:.2f}]"
        rows.append([r.name, spread, per_rule, ratio, f"{r.other_share_max * 100:.0f}", str(r.repeated)])
    header = ["target", "µs per request [min…max]", "µs per rule", "× gateway", "other CPU % max", "repeated"]
    return markdown_table(header, rows)


def _rule_text(rule: str | dict[str, str]) -> str:
    if isinstance(rule, str):
        return f"allow: `{rule}`"
    ((kind, expression),) = rule.items()
    return f"{kind}: `{expression}`"


def section(
    results: Sequence[Result],
    command: str,
    rounds: int,
    seconds: float,
    cpu: int | None,
    max_other: float,
    retries: int,
) -> str:
    names = {r.name for r in results}
    celpy_note = (
        f"cel-python {tools.package_version('cel-python')}"
        if "cel-python" in names
        else "cel-python not installed (`make bench` installs it), so not compared"
    )
    rules = "\n".join(f"  {i}. {_rule_text(rule)}" for i, rule in enumerate(RULES))
    gateway = next(r for r in results if r.name == "gateway").us.median
    lines = [
        f"## {NAME} — authorization rules per request, in-process",
        "",
        "Ten typical authorization rules evaluated for one request: from a `RequestCtx` (12 headers) and "
        "JWT claims (8) to a decision, building the CEL context included. Only the last rule allows the "
        "request, so all ten are evaluated. *gateway* is `CelRuleSet.evaluate` (agentgateway.policy.cel, "
        "native `cel` crate, one call per request); *context only* is the same with rules that read the "
        "same variables, `request` fields and headers but decide at once; *µs per rule* of the gateway is "
        "the difference over ten. "
        "*cel-python* is the pure-Python package with the same rules and rule semantics (its context "
        "built from the same `RequestCtx`; `cidr`/`containsIP` added as Python functions).",
        "",
        f"- Command: `{command}`",
        f"- Date: {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC",
        f"- Machine: {tools.machine_summary()}",
        f"- Versions: gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()}), "
        f"Python {tools.python_version()}, {celpy_note}",
        f"- Pinning: {'CPU ' + str(cpu) if cpu is not None else 'none'}; garbage collector off while timing",
        f"- Load: {rounds} interleaved round(s) of about {seconds:g} s per target; figures are medians, "
        "[min…max] the lowest and highest round. A round during which other processes used more than "
        f"{max_other * 100:g}% of a core is measured again after waiting for a quiet moment (at most "
        f"{retries} times); *other CPU % max* is the most anything else used during a kept round",
        "- Rules:",
        rules,
        "",
        table(results),
        "",
        f'- Ten rules, context included, ≤ {BUDGET_US:g} µs ("a few µs"; the later target is jwtAuth + ten '
        f"rules ≤ 25 µs added per request): **{'met' if gateway <= BUDGET_US else 'not met'}** — "
        f"{gateway:.2f} µs per request.",
    ]
    return "\n".join(lines) + "\n"


# --- the scenario ------------------------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds; figures are medians (5)")
    parser.add_argument("--seconds", type=float, default=1.0, help="seconds per target and round (1)")
    parser.add_argument(
        "--quick", action="store_true", help="1 round of 0.2 s; prints only, RESULTS.md left alone"
    )
    parser.add_argument("--cpu", type=int, default=1, help="CPU to pin to (1; -1: no pinning)")
    parser.add_argument(
        "--max-other-cpu",
        type=float,
        default=10.0,
        metavar="PCT",
        help="measure a round again when other processes used more than PCT%% of a core (10)",
    )
    parser.add_argument(
        "--retries", type=int, default=2, help="how often one round may be measured again (2)"
    )
    parser.add_argument(
        "--no-cel-python", action="store_true", help="leave cel-python out even when installed"
    )
    parser.add_argument("--no-results", action="store_true", help="print the table, do not touch RESULTS.md")
    parser.add_argument(
        "--results", type=Path, default=RESULTS_PATH, help="results file (benchmarks/RESULTS.md)"
    )


def run(args: argparse.Namespace) -> int:
    rounds, seconds = (1, 0.2) if args.quick else (args.rounds, args.seconds)
    if rounds < 1 or seconds <= 0:
        raise BenchmarkError("--rounds must be at least 1 and --seconds positive")
    cpu: int | None = args.cpu if args.cpu >= 0 else None
    if cpu is not None:
        if cpu not in os.sched_getaffinity(0):
            raise BenchmarkError(
                f"CPU {cpu} not usable here (usable: {sorted(os.sched_getaffinity(0))}); pass --cpu"
            )
        os.sched_setaffinity(0, {cpu})
    targets = gateway_targets()
    reference = None if args.no_cel_python else celpy_target()
    if reference is not None:
        targets.append(reference)
    elif not args.no_cel_python:
        print(
            "cel-python is not installed: reporting the gateway alone (`make bench` installs it)",
            file=sys.stderr,
        )
    results = measure(targets, rounds, seconds, args.max_other_cpu / 100, max(0, args.retries))
    command = " ".join(["python -m benchmarks", *map(shlex.quote, sys.argv[1:])])
    text = section(results, command, rounds, seconds, cpu, args.max_other_cpu / 100, max(0, args.retries))
    print(text)
    if not (args.quick or args.no_results):
        write_section(NAME, text, args.results)
        print(f"wrote the {NAME} section of {args.results}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary="µs per request of ten CEL authorization rules (context included), next to cel-python",
    add_arguments=add_arguments,
    run=run,
)
