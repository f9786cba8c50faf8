"""Scenario ``authz``: what authentication plus authorization costs per request, next to no policy.

Two gateways (one worker each) front the same upstream: *bare* has a plain route, *authz* the same
route with ``jwtAuth`` (strict, an RS256 key written in the config) and ten CEL ``authorization``
rules (two ``deny``, one ``require``, seven ``allow``; header, claim, path, method and CIDR checks;
only the last rule allows). wrk sends every request with the same valid token (and the headers the
rules read) to both. They are measured interleaved and pinned like the ``http`` scenario (proxy on
its core, wrk and upstream on the other). The added cost is the difference of the gateways' CPU
time per request, paired per round, and of their p50 latency.

In process, without sockets: the same policies' request phase on a parsed request (the token
answered from the validator's cache, as for every request after a token's first), and what a
token's first verification costs (parsing and the RS256 signature check).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from http.client import HTTPConnection
from pathlib import Path

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from benchmarks import http, procs, servers, tools
from benchmarks.http_samples import LATENCY_CONNECTIONS, PINNED, SATURATION_CONNECTIONS, Sample, Target
from benchmarks.policies import gateway_config
from benchmarks.report import Spread, markdown_table, write_section
from benchmarks.scenario import RunOptions, Scenario, add_run_options, run_options
from benchmarks.wrk import DONE_SCRIPT

NAME = "authz"
DEFAULT_BASE_PORT = 18280
BODY_SIZE = 1024
BUDGET_US = 25.0  # the issue's target: jwtAuth + ten rules, added per request
ISSUER = "https://idp.example.com"

RULES = [
    "{deny: \"request.headers['x-tenant'] == 'blocked'\"}",
    "{deny: \"!cidr('127.0.0.0/8').containsIP(source.address)\"}",
    '{require: "has(jwt.sub)"}',
    "\"request.method == 'POST' && request.path.startsWith('/api/')\"",
    "\"jwt.sub == 'bob' && 'admin' in jwt.groups\"",
    "\"request.headers['x-user'] == 'root'\"",
    "\"request.path.matches('^/admin/')\"",
    "\"jwt.iss == 'https://idp.example.com' && jwt.aud == 'admin'\"",
    "\"request.method in ['PUT', 'DELETE'] && request.host.endsWith('.example.com')\"",
    "\"jwt.groups.exists(g, g == 'dev') && request.headers['x-user'] == jwt.sub\"",
]
REQUEST_HEADERS = {"x-tenant": "bench", "x-user": "alice"}


def signing_key() -> tuple[rsa.RSAPrivateKey, str]:
    """A fresh RS256 key and its public JWK (one line of JSON, for the config)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    jwk.update(kid="bench", alg="RS256", use="sig")
    return key, "{" + ", ".join(f"{k}: {v}" for k, v in jwk.items()) + "}"


def mint(key: rsa.RSAPrivateKey) -> str:
    now = int(time.time())
    claims = {
        "iss": ISSUER,
        "sub": "alice",
        "aud": "gateway",
        "iat": now,
        "exp": now + 24 * 3600,
        "email": "alice@example.com",
        "groups": ["dev", "admin"],
        "scope": "openid profile",
    }
    return jwt.encode(claims, key, algorithm="RS256", headers={"kid": "bench"})


def authz_policies(jwk: str) -> str:
    rules = "".join(f"          - {rule}\n" for rule in RULES)
    return (
        "      policies:\n"
        "        jwtAuth:\n"
        "          mode: strict\n"
        f"          issuer: {ISSUER}\n"
        "          audiences: [gateway]\n"
        f"          jwks: {{keys: [{jwk}]}}\n"
        "        authorization:\n"
        "          rules:\n"
        f"{rules}"
    )


def wrk_script(work_dir: Path, token: str) -> Path:
    """wrk's script: the request headers, then the harness's ``done`` hook."""
    path = work_dir / "wrk-authz.lua"
    headers = {"Authorization": f"Bearer {token}", **REQUEST_HEADERS}
    lines = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in headers.items())
    path.write_text(lines + DONE_SCRIPT)
    return path


def in_process(policies: str, token: str, iterations: int = 20000) -> dict[str, float]:
    """µs per request: the request phase (cached token), and a token's first verification."""
    from agentgateway.config.compile import compile_config
    from agentgateway.config.loader import decode_config
    from agentgateway.policy.jwt_auth import JwtAuthPolicy, Verified
    from agentgateway.server.context import RequestCtx

    runtime = compile_config(decode_config(gateway_config(1, 2, 3, 4, policies)))
    listener = next(iter(runtime.binds.values())).default_listener
    headers = [
        (b"host", b"bench"),
        (b"user-agent", b"wrk"),
        (b"accept", b"*/*"),
        (b"authorization", f"Bearer {token}".encode()),
        *((k.encode(), v.encode()) for k, v in REQUEST_HEADERS.items()),
    ]

    def new_ctx() -> RequestCtx:
        return RequestCtx(
            b"GET", b"/x", b"/x", b"", b"bench", list(headers), "1.1", True, None, False, False,
            "127.0.0.1", 40000, b"http", 0.0, "bind/1",
        )  # fmt: skip

    rule = listener.routes.select_rule(b"bench", b"GET", b"/x", headers, b"")
    assert rule is not None
    chain = rule.route.chain.request
    jwt_policy = next(p for p in chain if isinstance(p, JwtAuthPolicy))

    def full() -> None:
        ctx = new_ctx()
        for policy in chain:
            if policy.on_request(ctx) is not None:  # type: ignore[union-attr]
                raise AssertionError("the benchmark request must be allowed")

    def jwt_only() -> None:
        if jwt_policy.on_request(new_ctx()) is not None:
            raise AssertionError("the benchmark token must be valid")

    def bare() -> None:
        new_ctx()

    def first_sight() -> None:
        jwt_policy.validator._cache.clear()
        if not isinstance(jwt_policy.validator.check(token), Verified):
            raise AssertionError("the benchmark token must be valid")

    def timed(fn: Callable[[], None], n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n * 1e6

    results: dict[str, list[float]] = {"full": [], "jwt": [], "bare": [], "first": []}
    for _ in range(3):
        results["full"].append(timed(full, iterations))
        results["jwt"].append(timed(jwt_only, iterations))
        results["bare"].append(timed(bare, iterations))
        results["first"].append(timed(first_sight, iterations // 20))
    median = {k: statistics.median(v) for k, v in results.items()}
    return {
        "chain": median["full"] - median["bare"],
        "jwt": median["jwt"] - median["bare"],
        "first": median["first"],
    }


def start_gateway(
    processes: procs.ProcessSet, name: str, config: str, port: int, readiness: int, body: bytes, cpu: int, token: str
) -> procs.ManagedProcess:
    path = processes.log_dir / f"{name}.yaml"
    path.write_text(config)
    process = processes.start(name, [sys.executable, "-m", "agentgateway", "--file", str(path)], cpu=cpu)

    def ready() -> bool:
        return procs.http_get(servers.HOST, readiness, "/healthz/ready")[0] == 200

    procs.wait_until(ready, what="readiness", process=process)

    def answers() -> bool:
        conn = HTTPConnection(servers.HOST, port, timeout=2)
        try:
            conn.request("GET", "/", headers={"Authorization": f"Bearer {token}", **REQUEST_HEADERS})
            response = conn.getresponse()
            return response.status == 200 and response.read() == body
        finally:
            conn.close()

    procs.wait_until(answers, what="proxied answer with the token", process=process)
    return process


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)


def _per_request(sample: Sample) -> float | None:
    if sample.proxy_cpu_s is None or not sample.wrk.requests:
        return None
    return sample.proxy_cpu_s / sample.wrk.requests * 1e6


def summarise(samples: Sequence[Sample], local: dict[str, float], rounds: int) -> str:
    rows = []
    for name in ("bare", "authz"):
        for c in (LATENCY_CONNECTIONS, SATURATION_CONNECTIONS):
            runs = [s for s in samples if s.target == name and s.connections == c]
            rps = Spread.of([s.wrk.requests_per_second for s in runs])
            p50 = Spread.of([s.wrk.p50_us for s in runs])
            cpu = Spread.of([v for s in runs if (v := _per_request(s)) is not None])
            assert rps and p50 and cpu
            rows.append(
                [
                    name,
                    str(c),
                    f"{rps.median:,.0f} [{rps.low:,.0f}…{rps.high:,.0f}]",
                    f"{p50.median:.0f}",
                    f"{statistics.median(s.wrk.p99_us for s in runs):.0f}",
                    f"{cpu.median:.1f} [{cpu.low:.1f}…{cpu.high:.1f}]",
                    str(sum(s.wrk.errors for s in runs)),
                ]
            )
    table = markdown_table(
        ["gateway", "c", "req/s [min…max]", "p50 µs", "p99 µs", "CPU µs/req [min…max]", "errors"], rows, 1
    )
    added = []
    for c in (LATENCY_CONNECTIONS, SATURATION_CONNECTIONS):
        pairs = []
        for r in range(rounds):
            bare = [s for s in samples if s.target == "bare" and s.connections == c and s.round == r]
            authz = [s for s in samples if s.target == "authz" and s.connections == c and s.round == r]
            if bare and authz:
                b, a = _per_request(bare[0]), _per_request(authz[0])
                if b is not None and a is not None:
                    pairs.append((a - b, authz[0].wrk.p50_us - bare[0].wrk.p50_us))
        cpu = Spread.of([p[0] for p in pairs])
        p50 = Spread.of([p[1] for p in pairs])
        assert cpu and p50
        added.append(
            f"- c={c}: authz − bare = {cpu.median:+.1f} µs CPU per request [{cpu.low:+.1f}…{cpu.high:+.1f}], "
            f"{p50.median:+.0f} µs p50 [{p50.low:+.0f}…{p50.high:+.0f}]"
        )
    verdict = (
        f"- In process: jwtAuth + ten rules {local['chain']:.1f} µs per request (jwtAuth alone "
        f"{local['jwt']:.1f} µs; target ≤ {BUDGET_US:g} µs added: "
        f"**{'met' if local['chain'] <= BUDGET_US else 'not met'}**); a token's first verification "
        f"(parse + RS256 signature) {local['first']:.0f} µs, once per token and worker."
    )
    return table + "\n\n" + "\n".join(added) + "\n" + verdict + "\n"


def run(args: argparse.Namespace) -> int:
    options: RunOptions = run_options(args, NAME)
    wrk = tools.find_tool("wrk")
    nginx = tools.find_tool("nginx")
    tools.find_tool("taskset", hint="install util-linux, which every Debian system has")
    base = options.base_port
    upstream_port = base
    gateways = {"bare": (base + 1, base + 11, base + 12), "authz": (base + 2, base + 13, base + 14)}
    procs.require_free_ports([upstream_port, *(p for ports in gateways.values() for p in ports)])
    http.fresh_work_dir(options.work_dir)
    key, jwk = signing_key()
    token = mint(key)
    policies = authz_policies(jwk)
    local = in_process(policies, token)
    print(
        f"{NAME}: in process: jwtAuth + rules {local['chain']:.2f} µs/request, jwtAuth {local['jwt']:.2f}, "
        f"first verification {local['first']:.1f}",
        file=sys.stderr,
    )
    body = servers.response_body(BODY_SIZE)
    with procs.ProcessSet(options.work_dir) as processes:
        upstream = servers.start_upstream(processes, nginx, port=upstream_port, body=body, cpu=options.load_cpu)
        targets = []
        for name, (port, stats, readiness) in gateways.items():
            config = gateway_config(port, stats, readiness, upstream_port, policies if name == "authz" else "")
            process = start_gateway(processes, name, config, port, readiness, body, options.proxy_cpu, token)
            http.check_pinning(process, options.proxy_cpu)
            targets.append(Target(name, port, process))
        bench_tools = http.Tools(wrk=wrk, nginx=nginx, envoy=None)
        script = wrk_script(options.work_dir, token)
        bench = http.Bench(upstream=upstream, tools=bench_tools, options=options, script=script)
        samples: list[Sample] = []
        for round_index in range(options.rounds):
            for target in targets:
                for c in (LATENCY_CONNECTIONS, SATURATION_CONNECTIONS):
                    samples.append(http.measure(bench, target, PINNED, c, round_index))
    facts = (
        f"- Command: `{options.command}`\n"
        f"- Machine: {tools.machine_summary()}\n"
        f"- Gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()}), "
        f"Python {tools.python_version()}; 1 worker each, access log off\n"
        f"- Pinning: CPU {options.proxy_cpu} both gateways (measured one at a time), "
        f"CPU {options.load_cpu} wrk (1 thread) and the upstream nginx; "
        f"{options.rounds} round(s) of {options.duration_s} s after {options.warmup_s} s warm-up, "
        "gateways interleaved; medians [min…max]\n"
        "- Policies: jwtAuth (strict, RS256 2048-bit key inline, issuer and audience checked, 8 claims) and "
        "ten authorization rules (two deny, one require, seven allow; the last allows); every request carries "
        "the same token (both gateways receive the same bytes)\n"
    )
    text = (
        f"## {NAME} — cost of jwtAuth + ten CEL authorization rules\n\n"
        "Two gateways in front of the same upstream (nginx, 1 KiB from memory): *bare* proxies a plain "
        "route, *authz* the same route with the policies below. The added cost is the difference in the "
        "gateway's CPU time per request and in p50 latency, paired per round.\n\n"
        + facts
        + "\n"
        + summarise(samples, local, options.rounds)
    )
    print(text)
    if options.results_path is not None:
        write_section(NAME, text, options.results_path)
        print(f"wrote the {NAME} section of {options.results_path}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary="per-request cost of jwtAuth + ten CEL authorization rules vs no policy",
    add_arguments=add_arguments,
    run=run,
)
