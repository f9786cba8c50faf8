"""Scenario ``llm``: Chat Completions through the gateway vs direct vs the LiteLLM proxy.

Four cases: passthrough (an OpenAI client, an OpenAI-compatible provider) and translated (an
OpenAI client, an Anthropic provider), each non-stream and stream, with a 1 KiB prompt. The
provider is ``tests.support.llm_fakes`` (the strict fake of the integration tests, uvloop +
httptools), the same process for every target. *direct* is wrk talking to the fake provider in
its own API (Chat Completions, or Anthropic Messages for the translated case): the floor.

LiteLLM runs from its own virtualenv under ``benchmarks/.work`` (a pinned release, installed on
first use) so that its pins never touch the gateway's environment; one uvicorn worker, like the
gateway's one worker. Layout: the proxy alone on ``--proxy-cpu``; wrk and the fake provider on
``--load-cpu``.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import json
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from benchmarks import procs, tools
from benchmarks.otlp_sink import OtlpSink
from benchmarks.report import markdown_table, write_section
from benchmarks.scenario import WORK_ROOT, RunOptions, Scenario, add_run_options, run_options
from benchmarks.wrk import DONE_SCRIPT, WrkResult, run_wrk

NAME = "llm"
DEFAULT_BASE_PORT = 19080
LITELLM_VERSION = "1.98.0"  # the release agentgateway's own LiteLLM comparison used
LITELLM_VENV = WORK_ROOT / "litellm-venv"
TARGETS = ("direct", "gateway", "litellm")
TRACED = "gateway-traced"  # added beside "gateway" by --tracing
CASES = ("passthrough", "translated", "passthrough-stream", "translated-stream")
PROMPT_BYTES = 1024
API_KEY = "sk-provider-secret"  # what the fake providers accept
ADDED_P50_BUDGET_US = 300.0  # non-stream, c=1, over direct
LITELLM_RATIO_GOAL = 20.0  # gateway req/s over LiteLLM's at saturation
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Ports:
    openai: int
    anthropic: int
    gateway: int
    gateway_ready: int
    litellm: int
    gateway_traced: int  # the traced gateway of `--tracing` (its own process and ports)
    gateway_traced_ready: int

    @classmethod
    def from_base(cls, base: int) -> Ports:
        return cls(base, base + 1, base + 2, base + 3, base + 4, base + 5, base + 6)

    def traced(self) -> Ports:
        """The same ports with the traced gateway's in the gateway's place."""
        return dataclasses.replace(self, gateway=self.gateway_traced, gateway_ready=self.gateway_traced_ready)


@dataclass(frozen=True)
class Sample:
    target: str
    case: str
    connections: int
    round: int
    wrk: WrkResult
    proxy_cpu_s: float | None
    other_cpu_s: float  # CPU used meanwhile by processes other than the proxy, wrk and the fakes
    attempts: int

    @property
    def other_share(self) -> float:
        return self.other_cpu_s / self.wrk.duration_s if self.wrk.duration_s else 0.0


# --- requests ---------------------------------------------------------------------------------------


def prompt() -> str:
    words = "the quick brown fox jumps over the lazy dog while the gateway translates every chunk "
    return (words * (PROMPT_BYTES // len(words) + 1))[:PROMPT_BYTES]


def request_for(target: str, case: str, ports: Ports) -> tuple[int, str, dict[str, str], dict[str, object]]:
    """(port, path, headers, body) of the request wrk sends for this target and case."""
    stream = case.endswith("-stream")
    translated = case.startswith("translated")
    text = prompt()
    if target == "direct":
        if translated:
            body: dict[str, object] = {
                "model": "bench-anthropic",
                "max_tokens": 256,
                "messages": [{"role": "user", "content": text}],
            }
            if stream:
                body["stream"] = True
            headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
            return ports.anthropic, "/v1/messages", headers, body
        body = {"model": "bench-openai", "messages": [{"role": "user", "content": text}]}
        if stream:
            body["stream"] = True
        return ports.openai, "/v1/chat/completions", {"authorization": f"Bearer {API_KEY}"}, body
    body = {
        "model": "bench-anthropic" if translated else "bench-openai",
        "messages": [{"role": "user", "content": text}],
    }
    if stream:
        body["stream"] = True
    port = {"gateway": ports.gateway, TRACED: ports.gateway_traced}.get(target, ports.litellm)
    return port, "/v1/chat/completions", {"authorization": "Bearer sk-client"}, body


def write_wrk_script(work: Path, name: str, headers: dict[str, str], body: dict[str, object]) -> Path:
    body_path = work / f"{name}.json"
    body_path.write_text(json.dumps(body))
    lines = [
        'wrk.method = "POST"',
        f'local f = io.open("{body_path}", "rb"); wrk.body = f:read("*a"); f:close()',
        'wrk.headers["Content-Type"] = "application/json"',
        *(f'wrk.headers["{k}"] = "{v}"' for k, v in headers.items()),
        # no response() hook: it slows wrk down; a 4xx/5xx answer is counted in errors.status anyway
    ]
    script = work / f"{name}.lua"
    script.write_text("\n".join(lines) + "\n" + DONE_SCRIPT)
    return script


def post(port: int, path: str, headers: dict[str, str], body: dict[str, object]) -> tuple[int, bytes]:
    import http.client

    conn = http.client.HTTPConnection(HOST, port, timeout=10)
    try:
        conn.request("POST", path, json.dumps(body), {"content-type": "application/json", **headers})
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


# --- servers ----------------------------------------------------------------------------------------


def start_fake(processes: procs.ProcessSet, kind: str, port: int, cpu: int) -> procs.ManagedProcess:
    argv = [sys.executable, "-m", "tests.support.llm_fakes", "--kind", kind, "--port", str(port)]
    process = processes.start(f"fake-{kind}", argv, cpu=cpu)
    procs.wait_until(lambda: not procs.port_is_free(port), what="listening", process=process)
    return process


def gateway_config(ports: Ports, tracing: str = "") -> str:
    """``tracing``: the ``config.tracing`` line when a run traces (``--tracing RATE``)."""
    return f"""\
config:
  workers: 1
  adminAddr: "off"
  statsAddr: "off"
  readinessAddr: "{HOST}:{ports.gateway_ready}"
  logging: {{level: warn}}
{tracing}llm:
  port: {ports.gateway}
  models:
  - name: bench-openai
    provider: openAI
    params: {{apiKey: {API_KEY}, baseUrl: "http://{HOST}:{ports.openai}/v1"}}
  - name: bench-anthropic
    provider: anthropic
    params: {{apiKey: {API_KEY}, baseUrl: "http://{HOST}:{ports.anthropic}/v1"}}
"""


def start_gateway(
    processes: procs.ProcessSet, ports: Ports, cpu: int, tracing: str = "", name: str = "gateway"
) -> procs.ManagedProcess:
    config = processes.log_dir / f"{name}.yaml"
    config.write_text(gateway_config(ports, tracing))
    process = processes.start(name, [sys.executable, "-m", "agentgateway", "--file", str(config)], cpu=cpu)
    procs.wait_until(
        lambda: procs.http_get(HOST, ports.gateway_ready, "/healthz/ready")[0] == 200, what="readiness", process=process
    )
    return process


def litellm_config(ports: Ports) -> str:
    return f"""\
model_list:
  - model_name: bench-openai
    litellm_params: {{model: openai/bench-openai, api_base: "http://{HOST}:{ports.openai}/v1", api_key: {API_KEY}}}
  - model_name: bench-anthropic
    litellm_params:
      {{model: anthropic/bench-anthropic, api_base: "http://{HOST}:{ports.anthropic}", api_key: {API_KEY}}}
litellm_settings:
  telemetry: false
  drop_params: true
"""


def ensure_litellm() -> Path:
    """LiteLLM's proxy in its own virtualenv (first run: a few minutes of pip)."""
    python = tools.pinned_venv(LITELLM_VENV, "litellm", LITELLM_VERSION, [f"litellm[proxy]=={LITELLM_VERSION}"])
    return python.parent / "litellm"


def start_litellm(processes: procs.ProcessSet, exe: Path, ports: Ports, cpu: int) -> procs.ManagedProcess:
    config = processes.log_dir / "litellm.yaml"
    config.write_text(litellm_config(ports))
    env_prefix = [
        "env",
        "LITELLM_LOCAL_MODEL_COST_MAP=True",
        "LITELLM_LOG=ERROR",
        "LITELLM_TELEMETRY=False",
        "DISABLE_SCHEMA_UPDATE=True",
    ]
    argv = [
        *env_prefix,
        str(exe),
        "--config",
        str(config),
        "--host",
        HOST,
        "--port",
        str(ports.litellm),
        "--num_workers",
        "1",
    ]
    process = processes.start("litellm", argv, cpu=cpu)
    body = {"model": "bench-openai", "messages": [{"role": "user", "content": "ready?"}]}
    procs.wait_until(
        lambda: post(ports.litellm, "/v1/chat/completions", {"authorization": "Bearer sk-client"}, body)[0] == 200,
        what="an answer",
        process=process,
        timeout=180,
    )
    return process


# --- measuring --------------------------------------------------------------------------------------


def _children_cpu_seconds() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _tree_cpu(process: procs.ManagedProcess | None) -> float:
    return procs.cpu_seconds(procs.process_tree(process.pid)) if process else 0.0


def measure_once(
    options: RunOptions,
    wrk: str,
    target: str,
    case: str,
    c: int,
    round_index: int,
    ports: Ports,
    process: procs.ManagedProcess | None,
    fakes: Sequence[procs.ManagedProcess],
) -> Sample:
    port, path, headers, body = request_for(target, case, ports)
    script = write_wrk_script(options.work_dir, f"{target}-{case}", headers, body)
    url = f"http://{HOST}:{port}{path}"
    if options.warmup_s:
        run_wrk(wrk, url, connections=c, seconds=options.warmup_s, cpu=options.load_cpu, script=script, log_path=None)
    log = options.work_dir / "wrk" / f"{target}-{case}-c{c}-round{round_index + 1}.txt"
    busy_before = procs.busy_cpu_seconds()
    before = _tree_cpu(process)
    load_before = sum(_tree_cpu(f) for f in fakes) + _children_cpu_seconds()
    result = run_wrk(
        wrk, url, connections=c, seconds=options.duration_s, cpu=options.load_cpu, script=script, log_path=log
    )
    load_after = sum(_tree_cpu(f) for f in fakes) + _children_cpu_seconds()
    after = _tree_cpu(process)
    busy = procs.busy_cpu_seconds() - busy_before
    other = max(0.0, busy - (after - before) - (load_after - load_before))
    return Sample(target, case, c, round_index, result, after - before if process else None, other, 1)


def measure(
    options: RunOptions,
    wrk: str,
    target: str,
    case: str,
    c: int,
    round_index: int,
    ports: Ports,
    process: procs.ManagedProcess | None,
    fakes: Sequence[procs.ManagedProcess],
) -> Sample:
    """One run, repeated (bounded) when other processes took more than their share meanwhile."""
    attempt = 1
    while True:
        sample = measure_once(options, wrk, target, case, c, round_index, ports, process, fakes)
        result = sample.wrk
        print(
            f"  round {round_index + 1}/{options.rounds}  {case:<19} {target:<8} c={c:<3} "
            f"{result.requests_per_second:>9,.0f} req/s  p50 {result.p50_us:>7.0f} µs  p99 {result.p99_us:>7.0f} µs"
            + (f"  {result.errors} errors" if result.errors else "")
            + (f"  (other processes: {sample.other_share:.0%} of a core)" if sample.other_share > 0.02 else ""),
            file=sys.stderr,
            flush=True,
        )
        if sample.other_share <= options.max_other_share or attempt > options.noisy_retries:
            return dataclasses.replace(sample, attempts=attempt)
        attempt += 1
        print("    other processes were busy; waiting for a quiet moment, then repeating", file=sys.stderr)
        procs.wait_for_quiet(options.max_other_share, 30.0)


def _median(values: Sequence[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(
    samples: list[Sample], targets: Sequence[str], cases: Sequence[str], connections: Sequence[int]
) -> tuple[str, list[str]]:
    header = [
        "case",
        "target",
        "c",
        "req/s",
        "p50 µs",
        "p99 µs",
        "+p50 µs",
        "× LiteLLM",
        "proxy CPU µs/req",
        "other CPU % max",
        "errors",
    ]
    rows = []
    verdicts = []
    for case in cases:
        for c in connections:
            direct = [s for s in samples if s.case == case and s.connections == c and s.target == "direct"]
            lite = [s for s in samples if s.case == case and s.connections == c and s.target == "litellm"]
            for target in targets:
                mine = [s for s in samples if s.case == case and s.connections == c and s.target == target]
                if not mine:
                    continue
                rps = _median([s.wrk.requests_per_second for s in mine]) or 0.0
                p50 = _median([s.wrk.p50_us for s in mine]) or 0.0
                p99 = _median([s.wrk.p99_us for s in mine]) or 0.0
                added = ""
                if target != "direct" and direct:
                    d50 = _median([s.wrk.p50_us for s in direct]) or 0.0
                    added = f"+{p50 - d50:,.0f}"
                    if target == "gateway" and c == 1 and not case.endswith("stream"):
                        within = "within" if p50 - d50 <= ADDED_P50_BUDGET_US else "OVER"
                        verdicts.append(
                            f"{case}: gateway adds {p50 - d50:,.0f} µs p50 at c=1 "
                            f"({within} the {ADDED_P50_BUDGET_US:.0f} µs budget)"
                        )
                ratio = ""
                if lite and target != "litellm":
                    lrps = _median([s.wrk.requests_per_second for s in lite]) or 0.0
                    ratio = f"{rps / lrps:,.1f}" if lrps else ""
                    if target == "gateway" and c == max(connections) and lrps:
                        meets = "meets" if rps / lrps >= LITELLM_RATIO_GOAL else "BELOW"
                        verdicts.append(
                            f"{case}: gateway {rps / lrps:,.1f}× LiteLLM's req/s at c={c} "
                            f"({meets} the {LITELLM_RATIO_GOAL:.0f}× goal)"
                        )
                cpu = [s.proxy_cpu_s / s.wrk.requests for s in mine if s.proxy_cpu_s is not None and s.wrk.requests]
                cpu_text = f"{(_median(cpu) or 0) * 1e6:,.0f}" if cpu else "–"
                errors = sum(s.wrk.errors for s in mine)
                noisy = "*" if any(s.attempts > 1 for s in mine) else ""
                other = f"{max(s.other_share for s in mine) * 100:.0f}{noisy}"
                rows.append(
                    [
                        case,
                        target,
                        str(c),
                        f"{rps:,.0f}",
                        f"{p50:,.0f}",
                        f"{p99:,.0f}",
                        added or "–",
                        ratio or "–",
                        cpu_text,
                        other,
                        str(errors),
                    ]
                )
    verdicts += _tracing_verdicts(samples, cases, connections)
    return markdown_table(header, rows, right_align_from=2), verdicts


def _tracing_verdicts(samples: list[Sample], cases: Sequence[str], connections: Sequence[int]) -> list[str]:
    """Traced − untraced gateway CPU per request, paired per round (the two are measured one
    after the other in every round, so a noisy moment touches both)."""
    out = []
    for case in cases:
        for c in connections:
            added = []
            for plain in (s for s in samples if s.case == case and s.connections == c and s.target == "gateway"):
                traced = [
                    s
                    for s in samples
                    if s.case == case and s.connections == c and s.target == TRACED and s.round == plain.round
                ]
                if traced and plain.proxy_cpu_s is not None and traced[0].proxy_cpu_s is not None:
                    per = [x.proxy_cpu_s / x.wrk.requests * 1e6 for x in (plain, traced[0]) if x.wrk.requests]  # type: ignore[operator]
                    if len(per) == 2:
                        added.append(per[1] - per[0])
            if added:
                out.append(
                    f"{case}, c={c}: tracing adds {statistics.median(added):+.1f} µs of gateway CPU per request "
                    f"[{min(added):+.1f}…{max(added):+.1f}]"
                )
    return out


# --- the run ----------------------------------------------------------------------------------------


def _list(allowed: Sequence[str]) -> object:
    def parse(text: str) -> tuple[str, ...]:
        names = tuple(n.strip() for n in text.split(",") if n.strip())
        if not names or any(n not in allowed for n in names):
            raise argparse.ArgumentTypeError(f"a comma list of {', '.join(allowed)}")
        return tuple(n for n in allowed if n in names)

    return parse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_run_options(parser, default_base_port=DEFAULT_BASE_PORT)
    parser.add_argument("--targets", type=_list(TARGETS), default=TARGETS, help=f"subset of {','.join(TARGETS)} (all)")
    parser.add_argument("--cases", type=_list(CASES), default=CASES, help=f"subset of {','.join(CASES)} (all)")
    parser.add_argument("--concurrency", default="1,32", help="wrk connections, comma list (1,32)")
    parser.add_argument(
        "--tracing",
        type=float,
        default=None,
        metavar="RATE",
        help="also run a traced gateway (this sampling rate, 0.0-1.0, OTLP/HTTP to a sink) beside the "
        "untraced one, measured right after it in every round, and report the added CPU per request (off)",
    )


def run(args: argparse.Namespace) -> int:
    options = run_options(args, NAME)
    targets: tuple[str, ...] = args.targets
    cases: tuple[str, ...] = args.cases
    connections = tuple(sorted({int(x) for x in args.concurrency.split(",") if x.strip()}))
    wrk = tools.find_tool("wrk")
    ports = Ports.from_base(options.base_port)
    needed = [ports.openai, ports.anthropic]
    if "gateway" in targets:
        needed += [ports.gateway, ports.gateway_ready]
        if args.tracing is not None:
            needed += [ports.gateway_traced, ports.gateway_traced_ready]
    if "litellm" in targets:
        needed.append(ports.litellm)
    procs.require_free_ports(needed)
    litellm_exe = ensure_litellm() if "litellm" in targets else None
    import shutil

    shutil.rmtree(options.work_dir, ignore_errors=True)
    (options.work_dir / "wrk").mkdir(parents=True)
    started = datetime.datetime.now(datetime.UTC)
    samples: list[Sample] = []
    sink = OtlpSink(options.base_port + 9) if args.tracing is not None else None
    tracing = ""
    if sink is not None:
        sink.__enter__()
        tracing = (
            f'  tracing: {{otlpEndpoint: "{sink.endpoint}", otlpProtocol: http, randomSampling: {args.tracing}}}\n'
        )
    with procs.ProcessSet(options.work_dir) as processes:
        fakes = [
            start_fake(processes, "openai", ports.openai, options.load_cpu),
            start_fake(processes, "anthropic", ports.anthropic, options.load_cpu),
        ]
        proxies: dict[str, procs.ManagedProcess | None] = {"direct": None}
        if "gateway" in targets:
            proxies["gateway"] = start_gateway(processes, ports, options.proxy_cpu)
            if tracing:
                # The traced gateway runs beside the untraced one and is measured right after it
                # in every round: the added CPU is paired per round.
                proxies[TRACED] = start_gateway(processes, ports.traced(), options.proxy_cpu, tracing, TRACED)
                position = targets.index("gateway") + 1
                targets = (*targets[:position], TRACED, *targets[position:])
        if litellm_exe is not None:
            proxies["litellm"] = start_litellm(processes, litellm_exe, ports, options.proxy_cpu)
        for round_index in range(options.rounds):
            for case in cases:
                for target in targets:
                    for c in connections:
                        samples.append(
                            measure(options, wrk, target, case, c, round_index, ports, proxies[target], fakes)
                        )
    if sink is not None:
        sink.__exit__(None, None, None)
    table, verdicts = summarise(samples, targets, cases, connections)
    lite_version = LITELLM_VERSION if litellm_exe else "not run"
    text = "\n".join(
        [
            "## llm — Chat Completions through the LLM gateway, 1 KiB prompts",
            "",
            "An OpenAI client (wrk, POST `/v1/chat/completions`) through the gateway (1 worker) and through the "
            "LiteLLM proxy (1 uvicorn worker), to the fake providers of the tests (`tests/support/llm_fakes.py`, "
            "uvloop + httptools, strict validation of every request). *passthrough*: an OpenAI-compatible provider; "
            "*translated*: an Anthropic provider (Chat Completions → Messages and back, streams chunk by chunk). "
            "*direct*: wrk to the fake provider in its own API (Chat, or Messages for the translated cases). "
            "Access logs off (gateway `logging.level: warn`, LiteLLM `LITELLM_LOG=ERROR`)."
            + (
                f" *{TRACED}*: a second gateway, the same config with tracing on (randomSampling {args.tracing}, "
                "OTLP/HTTP to a sink in the benchmark process), measured right after *gateway* in every round."
                if args.tracing is not None
                else ""
            ),
            "",
            f"- Command: `{options.command}`",
            f"- Date: {started:%Y-%m-%d %H:%M} UTC",
            f"- Machine: {tools.machine_summary()}",
            f"- Versions: gateway {tools.package_version('agentgateway')} (commit {tools.gateway_revision()}), "
            f"Python {tools.python_version()}, LiteLLM {lite_version} (own venv), {tools.wrk_version(wrk)}",
            f"- Pinning: CPU {options.proxy_cpu}: the proxy under test; CPU {options.load_cpu}: wrk (1 thread) and "
            "the fake providers.",
            f"- Load: wrk 1 thread, keep-alive, c = {', '.join(map(str, connections))}; {options.warmup_s} s warm-up "
            f"then {options.duration_s} s measured per run; {options.rounds} round(s), medians shown; "
            "+p50 is over direct for the same case and c. *other CPU % max*: the most CPU (% of a core) used by "
            "processes other than the proxy, wrk and the fakes during a run of that row; a run above "
            f"{options.max_other_share:.0%} was repeated (at most {options.noisy_retries} times, `*`).",
            "",
            table,
            "",
            *(f"- {v}" for v in verdicts),
        ]
    )
    print(text)
    if options.results_path is not None:
        write_section(NAME, text, options.results_path)
        print(f"wrote the {NAME} section of {options.results_path}", file=sys.stderr)
    print(f"configs, server logs and wrk reports: {options.work_dir}", file=sys.stderr)
    return 0


SCENARIO = Scenario(
    name=NAME,
    summary="LLM gateway vs direct vs LiteLLM proxy: Chat Completions passthrough and translated, stream and not",
    add_arguments=add_arguments,
    run=run,
)
