"""Scenario ``policies``: what a typical traffic-policy chain costs per request, next to bare proxying.

Two gateways (one worker each) front the same upstream: *bare* has a plain route, *chain* the same
route with request and response header modifiers, a prefix rewrite, a local rate limit (in the
shared-memory table, never exhausted) and a retry policy armed (never triggered). They are measured
interleaved, pinned like the ``http`` scenario (proxy on its core, wrk and upstream on the other).
The added cost is the difference of the gateways' CPU time per request at saturation, paired per
round; an in-process measure of the chain alone (the policies' request and response phases on a
parsed request, no I/O) is printed beside it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

from benchmarks import paired
from benchmarks.report import write_section
from benchmarks.scenario import RunOptions, Scenario, add_run_options, run_options

NAME = "policies"
DEFAULT_BASE_PORT = 18180
BUDGET_US = 15.0  # the target for the chain's added cost per request

CHAIN_POLICIES = """\
      policies:
        requestHeaderModifier:
          set: { x-tenant: bench, user-agent: agentgateway }
          add: { x-trace: "1" }
          remove: [cookie]
        responseHeaderModifier:
          set: { cache-control: no-store }
          remove: [server]
        urlRewrite:
          path: { prefix: /bench }
        localRateLimit:
        - maxTokens: 1000000000000
          tokensPerFill: 1000000000000
          fillInterval: 1s
        retry:
          attempts: 3
          codes: [502, 503]
"""


def chain_in_process(iterations: int = 20000) -> float:
    """µs per request of the chain's request and response phases, no sockets involved."""
    from agentgateway.config.compile import compile_config
    from agentgateway.config.loader import decode_config
    from agentgateway.core.context import RequestCtx
    from agentgateway.policy.chain import apply_response

    runtime = compile_config(decode_config(paired.gateway_config(1, 2, 3, 4, CHAIN_POLICIES)))
    listener = next(iter(runtime.binds.values())).default_listener
    headers = [(b"host", b"bench"), (b"user-agent", b"wrk"), (b"accept", b"*/*"), (b"cookie", b"a=b")]
    response = [(b"server", b"nginx"), (b"content-type", b"application/octet-stream"), (b"date", b"x")]

    def once() -> None:
        ctx = RequestCtx(
            b"GET", b"/x", b"/x", b"", b"bench", list(headers), "1.1", True, None, False, False,
            "127.0.0.1", 40000, b"http", 0.0, "bind/1",
        )  # fmt: skip
        rule = listener.routes.select_rule(ctx.host, ctx.method, ctx.path, ctx.headers, ctx.query)
        assert rule is not None
        route = rule.route
        ctx.match_prefix = rule.match_prefix
        for policy in route.chain.request:
            if policy.on_request(ctx) is not None:  # type: ignore[union-attr]
                raise AssertionError("the benchmark chain must let requests through")
        apply_response(route.chain, ctx, 200, list(response))

    def bare() -> None:
        ctx = RequestCtx(
            b"GET", b"/x", b"/x", b"", b"bench", list(headers), "1.1", True, None, False, False,
            "127.0.0.1", 40000, b"http", 0.0, "bind/1",
        )  # fmt: skip
        rule = listener.routes.select_rule(ctx.host, ctx.method, ctx.path, ctx.headers, ctx.query)
        assert rule is not None
        list(response)

    results = []
    for fn in (once, bare) * 3:
        start = time.perf_counter()
        for _ in range(iterations):
            fn()
        results.append((fn is once, (time.perf_counter() - start) / iterations * 1e6))
    chain = statistics.median(t for is_chain, t in results if is_chain)
    base = statistics.median(t for is_chain, t in results if not is_chain)
    return chain - base


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)


def run(args: argparse.Namespace) -> int:
    options: RunOptions = run_options(args, NAME)
    in_process = chain_in_process()
    print(f"{NAME}: chain alone, in process: {in_process:.2f} µs/request", file=sys.stderr)
    samples = paired.measure(options, "chain", CHAIN_POLICIES, {})
    text = (
        f"## {NAME} — cost of a typical traffic-policy chain\n\n"
        "Two gateways in front of the same upstream (nginx, 1 KiB from memory): *bare* proxies a plain "
        "route, *chain* the same route with the policies below. The added cost is the difference in the "
        "gateway's CPU time per request, paired per round.\n\n"
        + paired.facts(
            options,
            "Chain: requestHeaderModifier (set 2, add 1, remove 1), responseHeaderModifier (set 1, remove 1), "
            "urlRewrite (prefix), localRateLimit (shared table, never exhausted), retry (3 attempts, armed, "
            "never triggered)",
        )
        + "\n"
        + paired.summarise(samples, "chain", options.rounds)
        + f"- In-process, the chain's request and response phases alone: {in_process:.1f} µs per request "
        f"(target: ≤ {BUDGET_US:g} µs added).\n"
    )
    print(text)
    if options.results_path is not None:
        write_section(NAME, text, options.results_path)
        print(f"wrote the {NAME} section of {options.results_path}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary="per-request cost of headers + rewrite + local rate limit + retry armed vs bare proxying",
    add_arguments=add_arguments,
    run=run,
)
