"""Audit 22 through the daemon: inputs of odd shapes on every surface must get the error their
protocol defines (HTTP 400, JSON-RPC -32600/-32602), never a 500 or a traceback, and the gateway
keeps serving. Each surface has one daemon, explicit regressions for what was found, and a
bounded, seeded mutation of valid requests (every key given a value of another JSON kind) whose
answers are checked and whose log is read for tracebacks afterwards."""

from __future__ import annotations

import copy
import json
import random
import re
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import (
    Gateway,
    McpServerProcess,
    UpstreamServer,
    binds,
    free_port,
    mcp_config,
    python_stdio_target,
    stdio_target,
)
from tests.support.llm import AWS_ENV, FakeProvider, model_entries

# Values of every JSON kind, and a few shapes readers expect one level down.
WRONG: list[Any] = [
    None,
    True,
    0,
    -1,
    1.5,
    10**30,
    "",
    "x",
    [],
    {},
    [None],
    [1],
    ["x"],
    [[]],
    {"a": 1},
    {"type": None},
    [{"type": "text"}],
    [{"type": "text", "text": None}],
    [{"role": None}],
]


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield prefix
    if isinstance(obj, dict):
        for key, value in obj.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _paths(value, (*prefix, i))


def _replaced(obj: Any, path: tuple[Any, ...], value: Any) -> Any:
    if not path:
        return value
    out = copy.deepcopy(obj)
    cur = out
    for step in path[:-1]:
        cur = cur[step]
    cur[path[-1]] = value
    return out


def mutations(base: dict[str, Any], count: int, seed: int, keep: tuple[str, ...] = ()) -> list[Any]:
    """``count`` variants of ``base``, each with one value (at any depth, the top-level keys in
    ``keep`` excepted) replaced by one of ``WRONG``; seeded, so a failure is reproducible."""
    rnd = random.Random(seed)
    paths = [p for p in _paths(base) if p and p[0] not in keep]
    return [_replaced(base, rnd.choice(paths), rnd.choice(WRONG)) for _ in range(count)]


_TRACE = re.compile(r"Traceback|internal error|Exception|worker\S* (exited|restart)", re.I)


def assert_clean_log(gw: Gateway, since: int) -> None:
    """No traceback, internal error or worker restart in the gateway's log after offset ``since``."""
    found = _TRACE.search(gw.output()[since:])
    assert found is None, gw.output()[since:][max(found.start() - 2000, 0) : found.end() + 2000]


# ----------------------------------------------------------------------------------------- LLM

_LLM_BODIES: dict[str, dict[str, Any]] = {
    "/v1/chat/completions": {
        "model": "M",
        "messages": [
            {"role": "system", "content": "s"},
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "r"},
        ],
        "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}],
        "max_tokens": 5,
    },
    "/v1/responses": {
        "model": "M",
        "input": [
            {"role": "user", "content": [{"type": "input_text", "text": "hi"}]},
            {"type": "function_call", "call_id": "c", "name": "f", "arguments": "{}"},
            {"type": "function_call_output", "call_id": "c", "output": "o"},
        ],
        "instructions": "be",
        "max_output_tokens": 5,
    },
    "/v1/messages": {
        "model": "M",
        "max_tokens": 5,
        "system": [{"type": "text", "text": "s"}],
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "hi"}]},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": "r"}]},
        ],
    },
    "/v1/embeddings": {"model": "M", "input": ["a", "b"]},
    "/v1/messages/count_tokens": {"model": "M", "system": "s", "messages": [{"role": "user", "content": "hi"}]},
}
_LLM_MODELS = ["gpt-4o-mini", "claude-haiku", "gemini-2.5-flash", "bedrock-claude"]


class LlmSurface:
    def __init__(self, gw: Gateway, port: int) -> None:
        self.gw = gw
        self.port = port

    def post(self, path: str, body: Any) -> httpx.Response:
        headers = {"content-type": "application/json", "anthropic-version": "2023-06-01"}
        return httpx.post(f"http://127.0.0.1:{self.port}{path}", content=json.dumps(body), headers=headers, timeout=10)


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmSurface]:
    """Every API's reader in use: request and response guards, prompts added, a token budget."""
    tmp: Path = tmp_path_factory.mktemp("shapes-llm")
    fakes: dict[str, FakeProvider] = {}
    gw: Gateway | None = None
    try:
        for kind in ("openai", "azure", "anthropic", "gemini", "vertex", "bedrock"):
            fakes[kind] = FakeProvider(tmp, kind)
        port = free_port()
        mask = {"regex": {"action": "mask", "rules": [{"pattern": "secret"}]}}
        policies = {
            "ai": {
                "promptGuard": {"request": [mask], "response": [mask]},
                "prompts": {"prepend": [{"role": "system", "content": "Be terse."}]},
            },
            "localRateLimit": [{"type": "tokens", "maxTokens": 10**9, "tokensPerFill": 10**9, "fillInterval": "1h"}],
        }
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, {"llm": {"port": port, "models": model_entries(fakes), "policies": policies}}, env=AWS_ENV)
        yield LlmSurface(gw, port)
    finally:
        if gw is not None:
            gw.stop()
        for fake in fakes.values():
            fake.stop()


@pytest.mark.parametrize(
    ("path", "body", "reason"),
    [
        # count_tokens counted the texts of a non-list `messages` (500: 'float' is not iterable)
        ("/v1/messages/count_tokens", {"model": "gpt-4o-mini", "messages": 1.5}, "messages must be a list"),
        ("/v1/messages/count_tokens", {"model": "claude-haiku", "messages": True}, "messages must be a list"),
        # prompts added to a non-list conversation (500: value after * must be an iterable)
        ("/v1/messages", {"model": "claude-haiku", "max_tokens": 5, "messages": 7}, "messages must be a list"),
        ("/v1/chat/completions", {"model": "gpt-4o-mini", "messages": 7}, "messages must be a list"),
        ("/v1/responses", {"model": "gpt-4o-mini", "input": 10**30}, "input must be a string or a list"),
        ("/v1/messages", {"model": "claude-haiku", "max_tokens": 5, "system": 3, "messages": []}, "system must be"),
    ],
)
def test_llm_conversation_of_another_kind_is_400(llm: LlmSurface, path: str, body: Any, reason: str) -> None:
    since = len(llm.gw.output())
    answer = llm.post(path, body)
    assert answer.status_code == 400, answer.text
    assert reason in answer.text
    assert_clean_log(llm.gw, since)


@pytest.mark.parametrize(
    ("path", "body"),
    [
        # a system block whose text is not a string, joined with the added system prompt (500)
        (
            "/v1/messages",
            {"model": "bedrock-claude", "max_tokens": 5, "system": [{"type": "text", "text": []}], "messages": []},
        ),
        (
            "/v1/messages/count_tokens",
            {"model": "claude-haiku", "system": [{"type": "text", "text": None}], "messages": []},
        ),
        # a Chat message whose tool_calls is not a list, walked by the request guard (500)
        (
            "/v1/chat/completions",
            {"model": "azure-gpt", "messages": [{"role": "assistant", "content": "a", "tool_calls": 1.5}]},
        ),
    ],
)
def test_llm_odd_inner_values_do_not_break_the_readers(llm: LlmSurface, path: str, body: Any) -> None:
    since = len(llm.gw.output())
    answer = llm.post(path, body)
    assert answer.status_code < 500, answer.text
    assert_clean_log(llm.gw, since)


@pytest.mark.parametrize("path", sorted(_LLM_BODIES))
def test_llm_mutated_bodies_never_500(llm: LlmSurface, path: str) -> None:
    since = len(llm.gw.output())
    rnd = random.Random(path)
    for i, body in enumerate(mutations(_LLM_BODIES[path], 60, seed=22, keep=("model",))):
        body["model"] = _LLM_MODELS[i % len(_LLM_MODELS)]
        if rnd.random() < 0.3:
            body["stream"] = True
        answer = llm.post(path, body)
        assert answer.status_code < 500, (body, answer.text)
    assert llm.post(path, {**_LLM_BODIES[path], "model": "gpt-4o-mini"}).status_code < 500
    assert_clean_log(llm.gw, since)


# --------------------------------------------------------------------------------------- admin

ADMIN_HEADERS = {"x-agentgateway-admin": "1", "content-type": "application/json"}


@pytest.fixture(scope="module")
def admin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tmp: Path = tmp_path_factory.mktemp("shapes-admin")
    up = UpstreamServer(tmp, "up")
    gw: Gateway | None = None
    try:
        port = free_port()
        routes = [
            {"name": "a", "matches": [{"path": {"pathPrefix": "/a2a"}}], "policies": {"a2a": {}}},
            {"name": "h"},
        ]
        for route in routes:
            route["backends"] = [{"host": up.address}]
        (tmp / "gw").mkdir()
        gw = Gateway(tmp / "gw", binds(port, routes))
        yield gw
    finally:
        if gw is not None:
            gw.stop()
        up.stop()


@pytest.mark.parametrize(
    "text",
    [
        "a: " + "[" * 5000,  # the editor's YAML composer recursed once per level: RecursionError, 500
        "a: " + "[" * 990 + '"<redacted>"' + "]" * 990,  # as deep as libyaml goes, with a secret's mark
        "a: " + "{b: " * 990 + "1" + "}" * 990,
    ],
)
def test_admin_editor_takes_deeply_nested_yaml(admin: Gateway, text: str) -> None:
    since = len(admin.output())
    for endpoint in ("config/validate", "config/apply"):
        answer = httpx.post(
            f"{admin.admin_url}/ui/api/{endpoint}", json={"text": text, "base": "x"}, headers=ADMIN_HEADERS, timeout=10
        )
        assert answer.status_code < 500, answer.text
    assert (
        httpx.post(
            f"{admin.admin_url}/ui/api/config/validate", json={"text": "a: " + "[" * 5000}, headers=ADMIN_HEADERS
        )
        .json()["errors"][0]["message"]
        .startswith("invalid YAML")
    )
    assert_clean_log(admin, since)


def test_admin_mutated_bodies_never_500(admin: Gateway) -> None:
    since = len(admin.output())
    current = httpx.get(f"{admin.admin_url}/ui/api/config", timeout=10).json()
    route = "binds[0].listeners[0].routes[0]"
    bodies = {
        "call": {"route": route, "method": "POST", "path": "/x", "headers": {"accept": "application/json"}, "body": {}},
        "config/validate": {"text": current["text"]},
        "config/rollback": {"base": "x"},
    }
    for endpoint, body in bodies.items():
        for variant in mutations(body, 60, seed=22):
            answer = httpx.post(
                f"{admin.admin_url}/ui/api/{endpoint}", content=json.dumps(variant), headers=ADMIN_HEADERS, timeout=10
            )
            assert answer.status_code < 500 or answer.status_code == 502, (variant, answer.text)
    for window in ("nan", "inf", "-inf", "1e999", "x", "", "-5"):
        assert httpx.get(f"{admin.admin_url}/ui/api/traffic?window={window}", timeout=10).status_code in (200, 400)
    assert_clean_log(admin, since)


# ----------------------------------------------------------------------------------------- MCP

MCP_ACCEPT = "application/json, text/event-stream"
MODERN = "2026-07-28"
ENVELOPE = {
    "io.modelcontextprotocol/protocolVersion": MODERN,
    "io.modelcontextprotocol/clientCapabilities": {"elicitation": {}},
    "io.modelcontextprotocol/clientInfo": {"name": "raw", "version": "1"},
}
_MCP_REQUESTS: list[dict[str, Any]] = [
    {"method": "tools/list", "params": {"cursor": "abc", "_meta": {"progressToken": 1}}},
    {
        "method": "tools/call",
        "params": {"name": "alpha_echo", "arguments": {"text": "x"}, "_meta": {"progressToken": "p"}},
    },
    {"method": "resources/read", "params": {"uri": "alpha+memo://alpha/info"}},
    {"method": "prompts/get", "params": {"name": "beta_greet", "arguments": {"person": "Lin"}}},
    {
        "method": "completion/complete",
        "params": {"ref": {"type": "ref/prompt", "name": "beta_greet"}, "argument": {"name": "person", "value": "L"}},
    },
    {"method": "logging/setLevel", "params": {"level": "info"}},
    {"method": "notifications/cancelled", "params": {"requestId": 1, "reason": "x"}},
    {"id": 99, "result": {"action": "accept", "content": {"confirm": True}}},
]


class McpSurface:
    def __init__(self, gw: Gateway, url: str) -> None:
        self.gw = gw
        self.url = url
        self.client = httpx.Client(timeout=10)
        self.session = ""

    def start(self) -> None:
        init = {"protocolVersion": "2025-06-18", "capabilities": {}, "clientInfo": {"name": "x", "version": "1"}}
        answer = self.client.post(
            self.url,
            json={"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": init},
            headers={"accept": MCP_ACCEPT},
        )
        self.session = answer.headers["mcp-session-id"]
        self.legacy({"jsonrpc": "2.0", "method": "notifications/initialized"})

    def legacy(self, message: Any) -> httpx.Response:
        headers = {"accept": MCP_ACCEPT, "mcp-session-id": self.session, "mcp-protocol-version": "2025-06-18"}
        return self.client.post(self.url, content=json.dumps(message), headers=headers)

    def modern(self, message: Any) -> httpx.Response:
        headers = {"accept": MCP_ACCEPT, "mcp-protocol-version": MODERN, "content-type": "application/json"}
        if isinstance(message, dict) and isinstance(message.get("method"), str) and message["method"].isprintable():
            headers["mcp-method"] = message["method"]
            params = message.get("params")
            name = params.get("name", params.get("uri")) if isinstance(params, dict) else None
            if isinstance(name, str) and name.isascii() and name.isprintable():
                headers["mcp-name"] = name
        return self.client.post(self.url, content=json.dumps(message), headers=headers)


@pytest.fixture(scope="module")
def mcp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[McpSurface]:
    tmp: Path = tmp_path_factory.mktemp("shapes-mcp")
    beta = McpServerProcess(tmp, "beta", "http")
    gw: Gateway | None = None
    try:
        port = free_port()
        (tmp / "gw").mkdir()
        gw = Gateway(tmp / "gw", mcp_config(port, [stdio_target("alpha"), {"name": "beta", "mcp": {"host": beta.url}}]))
        surface = McpSurface(gw, f"http://127.0.0.1:{port}/mcp")
        surface.start()
        yield surface
        surface.client.close()
    finally:
        if gw is not None:
            gw.stop()
        beta.stop()


def _answered(answer: httpx.Response) -> None:
    assert answer.status_code < 500, answer.text
    if answer.headers.get("content-type", "").startswith("application/json") and answer.content:
        error = answer.json().get("error") if isinstance(answer.json(), dict) else None
        assert error is None or error["code"] != -32603, answer.text  # internal error


@pytest.mark.parametrize("index", range(len(_MCP_REQUESTS)))
def test_mcp_mutated_messages_get_protocol_errors(mcp: McpSurface, index: int) -> None:
    """Each value of a request (params of every kind, ids, _meta, cursors, progress tokens,
    URIs, completion arguments, answers to the server) replaced, in the legacy shape and in
    the modern one (whose envelope is mutated too)."""
    since = len(mcp.gw.output())
    base = {"jsonrpc": "2.0", "id": 1, **_MCP_REQUESTS[index]}
    if "result" in base:
        base.pop("method", None)
    rnd = random.Random(index)
    for variant in mutations(base, 40, seed=22):
        answer = mcp.legacy(variant)
        if answer.status_code == 404:  # the session ended meanwhile: start another
            mcp.start()
        _answered(answer)
        modern = copy.deepcopy(variant)
        if isinstance(modern, dict) and "method" in modern:
            params = modern.get("params")
            if not isinstance(params, dict):
                params = modern["params"] = {}
            envelope = copy.deepcopy(ENVELOPE)
            if rnd.random() < 0.5:
                envelope[rnd.choice(list(envelope))] = rnd.choice(WRONG)
            params["_meta"] = envelope
        _answered(mcp.modern(modern))
    assert mcp.legacy({"jsonrpc": "2.0", "id": 5, "method": "ping"}).status_code == 200
    assert_clean_log(mcp.gw, since)


@pytest.mark.parametrize("request_id", [None, True, 1.5, 10**30, [], {}, "", "x" * 5000, {"a": [1]}])
def test_mcp_odd_ids(mcp: McpSurface, request_id: Any) -> None:
    since = len(mcp.gw.output())
    _answered(mcp.legacy({"jsonrpc": "2.0", "id": request_id, "method": "tools/list"}))
    modern = {"jsonrpc": "2.0", "id": request_id, "method": "tools/list", "params": {"_meta": ENVELOPE}}
    _answered(mcp.modern(modern))
    assert_clean_log(mcp.gw, since)


# ----------------------------------------------------------------------------------------- A2A

_MESSAGE_10 = {"messageId": "m1", "role": "ROLE_USER", "parts": [{"text": "hello"}], "contextId": "c", "taskId": "t"}
_MESSAGE_03 = {"kind": "message", "messageId": "m1", "role": "user", "parts": [{"kind": "text", "text": "hello"}]}
_A2A_CALLS: list[tuple[str, dict[str, str], dict[str, Any]]] = [
    (
        "/",
        {"a2a-version": "1.0"},
        {"jsonrpc": "2.0", "id": 1, "method": "SendMessage", "params": {"message": _MESSAGE_10}},
    ),
    (
        "/",
        {"a2a-version": "1.0"},
        {"jsonrpc": "2.0", "id": 1, "method": "GetTask", "params": {"id": "t", "historyLength": 2}},
    ),
    (
        "/",
        {"a2a-version": "1.0"},
        {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "ListTasks",
            "params": {"contextId": "c", "pageSize": 2, "pageToken": "x"},
        },
    ),
    ("/", {}, {"jsonrpc": "2.0", "id": 1, "method": "message/send", "params": {"message": _MESSAGE_03}}),
    ("/", {}, {"jsonrpc": "2.0", "id": 1, "method": "tasks/cancel", "params": {"id": "t"}}),
    ("/message:send", {"a2a-version": "1.0"}, {"message": _MESSAGE_10, "configuration": {"historyLength": 1}}),
    ("/tasks/t:cancel", {"a2a-version": "1.0"}, {"id": "t"}),
    ("/v1/message:send", {}, {"message": _MESSAGE_03}),
]


@pytest.fixture(scope="module")
def a2a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, str]]:
    """An A2A route whose later policies read a2a.* (authorization, a rate-limit key)."""
    from tests.integration.test_a2a import A2aAgent

    tmp: Path = tmp_path_factory.mktemp("shapes-a2a")
    agent = A2aAgent(tmp)
    gw: Gateway | None = None
    try:
        port = free_port()
        limit = {"maxTokens": 10**6, "tokensPerFill": 1, "fillInterval": "1h", "key": "a2a.method"}
        policies = {
            "a2a": {},
            "authorization": {"rules": [{"deny": "a2a.method == 'CancelTask'"}]},
            "localRateLimit": [limit],
        }
        (tmp / "gw").mkdir()
        gw = Gateway(
            tmp / "gw", binds(port, [{"policies": policies, "backends": [{"host": f"127.0.0.1:{agent.port}"}]}])
        )
        yield gw, f"http://127.0.0.1:{port}"
    finally:
        if gw is not None:
            gw.stop()
        agent.stop()


@pytest.mark.parametrize("index", range(len(_A2A_CALLS)))
def test_a2a_mutated_calls_never_500(a2a: tuple[Gateway, str], index: int) -> None:
    gw, base = a2a
    since = len(gw.output())
    path, headers, body = _A2A_CALLS[index]
    with httpx.Client(timeout=10) as client:
        for variant in mutations(body, 40, seed=22):
            answer = client.post(
                base + path, content=json.dumps(variant), headers={"content-type": "application/json", **headers}
            )
            assert answer.status_code < 500, (variant, answer.text)
    assert_clean_log(gw, since)


# ------------------------------------------------------------------------- CEL and HTTP/2 heads

_X = 'request.headers["x-s"]'
_CEL_READERS = [
    f"int({_X}) > 3",
    f"double({_X}) > 1.0",
    f'ip({_X}).family() == 4 || cidr({_X}).containsIP("1.2.3.4")',
    f'{_X}.substring(1, 3) == "ab" || {_X}.charAt(5) == "x"',
    f'{_X}.matches(request.headers["x-re"])',
    f'{_X}.split(",")[3] == "x"',
    f'string(bytes({_X})) == "x" && {_X}.lowerAscii().reverse() != ""',
    f'{_X}.indexOf(request.headers["x-re"], 3) > 0',
    f'{_X}.replace(request.headers["x-re"], {_X}) != ""',
    f'"%s-%d".format([{_X}, size({_X})]) != ""',
    f'{_X} + request.headers["x-missing"] == "x"',
]
_ODD_VALUES = [
    b"",
    b"1",
    b"99999999999999999999999",
    b"1e999",
    b"nan",
    b"1.2.3.4/33",
    b"fe80::1%eth0",
    b"\x80\xff\xfe",
    b"\xe2\x82",
    b"\xed\xa0\x80",
    b"a,b",
    b"%s",
    b"(",
    b"a{1000}{1000}",
    b"\t x \t",
    b"a" * 8000,
]


def _raw_get(port: int, path: bytes, fields: list[tuple[bytes, bytes]]) -> bytes:
    head = b"GET " + path + b" HTTP/1.1\r\nHost: h.test\r\nConnection: close\r\n"
    head += b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(head)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data


def test_cel_over_header_bytes_of_any_kind(gateway: Any, upstream: Any) -> None:
    """Rules, transformations and rate-limit keys that convert, index, split and match header
    values: whatever bytes a client sends, the request is answered (a rule that fails is no
    match), never a 500."""
    up = upstream()
    port = free_port()
    routes = [
        {
            "name": "authz",
            "matches": [{"path": {"pathPrefix": "/authz"}}],
            "policies": {"authorization": {"rules": [{"deny": rule} for rule in _CEL_READERS]}},
        },
        {
            "name": "transformed",
            "matches": [{"path": {"pathPrefix": "/set"}}],
            "policies": {
                "transformations": {
                    "request": {"set": {f"x-e{i}": rule for i, rule in enumerate(_CEL_READERS)}},
                    "response": {"set": {"x-back": f'{_X}.split(",")[1]'}},
                },
                "localRateLimit": [
                    {"maxTokens": 10**6, "tokensPerFill": 1, "fillInterval": "1h", "key": f"string(int({_X}))"}
                ],
            },
        },
    ]
    for route in routes:
        route["backends"] = [{"host": up.address}]
    gw = gateway(binds(port, routes))
    rnd = random.Random(22)
    since = len(gw.output())
    for _ in range(60):
        fields = [(b"x-s", rnd.choice(_ODD_VALUES)), (b"x-re", rnd.choice(_ODD_VALUES))]
        if rnd.random() < 0.3:
            fields.append((b"x-s", rnd.choice(_ODD_VALUES)))
        for path in (b"/authz", b"/set"):
            answer = _raw_get(port, path, fields)
            assert re.match(rb"HTTP/1\.1 [234]\d\d ", answer), (fields, answer[:300])
    assert_clean_log(gw, since)


_H2_FIELDS = [
    (b"te", b"trailers"),
    (b"te", b"gzip"),
    (b"connection", b"close"),
    (b"transfer-encoding", b"chunked"),
    (b"content-length", b"x"),
    (b"content-length", b"99999999999999999999"),
    (b"host", b"other"),
    (b"x-s", b"\x80\xff"),
    (b"x-s", b"a\r\nb: c"),
    (b"x-s", b"\x00"),
    (b":protocol", b"websocket"),
    (b":status", b"200"),
    (b":foo", b"x"),
    (b"content-type", b"\xff"),
    (b"mcp-session-id", b"\xff\xfe"),
    (b"mcp-protocol-version", b"\x80"),
    (b"a2a-version", b"\xff"),
    (b"origin", b"\xff"),
    (b"authorization", b"Bearer \xff"),
    (b"forwarded", b"for=\xff"),
    (b"", b"x"),
    (b"A", b"x"),
    (b"x" * 300, b"y" * 9000),
]


def test_http2_heads_of_odd_fields(gateway: Any, upstream: Any, tmp_path: Path) -> None:
    """HTTP/2 requests to every kind of route (plain, LLM, MCP, A2A, CORS) with odd fields:
    each stream is answered (a 4xx or a stream reset), never a 500, and nothing is logged
    as an internal error."""
    from tests.support.http2 import RawH2Client, Response

    up = upstream()
    fake = FakeProvider(tmp_path, "openai")
    try:
        port = free_port()
        llm_backend = {
            "ai": {
                "name": "o",
                "provider": {"openAI": {"model": "gpt-4o-mini"}},
                "hostOverride": f"127.0.0.1:{fake.port}",
            }
        }
        routes = [
            {"name": "llm", "matches": [{"path": {"pathPrefix": "/v1"}}], "backends": [llm_backend]},
            {
                "name": "mcp",
                "matches": [{"path": {"pathPrefix": "/mcp"}}],
                "backends": [{"mcp": {"targets": [stdio_target("s")]}}],
            },
            {"name": "a2a", "matches": [{"path": {"pathPrefix": "/a2a"}}], "policies": {"a2a": {}}},
            {"name": "h", "policies": {"cors": {"allowOrigins": ["*"], "allowHeaders": ["*"]}}},
        ]
        for route in routes[2:]:
            route["backends"] = [{"host": up.address}]
        gw = gateway(binds(port, routes))
        since = len(gw.output())
        rnd = random.Random(22)
        paths = [
            b"/echo",
            b"/v1/chat/completions",
            b"/v1/models",
            b"/mcp",
            b"/a2a/",
            b"/a2a/.well-known/agent-card.json",
        ]
        bodies = [None, b"{}", b'{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}', b"\xff" * 10]
        client: RawH2Client | None = None
        for _ in range(150):
            if client is None or client.closed or client.goaway is not None:
                if client is not None:
                    client.sock.close()
                client = RawH2Client(port)
                client.conn.config.validate_outbound_headers = False
                client.conn.config.normalize_outbound_headers = False
                client.conn.config.validate_inbound_headers = False
            method = rnd.choice([b"GET", b"POST", b"OPTIONS", b"DELETE"])
            fields = [(b":method", method), (b":scheme", b"http"), (b":authority", b"localhost")]
            fields.append((b":path", rnd.choice(paths)))
            fields += [rnd.choice(_H2_FIELDS) for _ in range(rnd.randrange(1, 3))]
            body = rnd.choice(bodies) if method == b"POST" else None
            stream_id = client.conn.get_next_available_stream_id()
            try:
                client.conn.send_headers(stream_id, fields, end_stream=body is None)
                client.responses[stream_id] = Response()
                if body is not None:
                    client.send(stream_id, body, end=True)
                client.flush()
                answer = client.response(stream_id)
            except ConnectionError:  # the gateway ended the connection (GOAWAY): a refusal
                client.closed = True
                continue
            assert answer.status is None or answer.status < 500 or answer.status == 502, (fields, answer.body[:300])
        if client is not None:
            client.sock.close()
        assert_clean_log(gw, since)
    finally:
        fake.stop()


# ------------------------------------------------------------------------------- MCP upstreams

_ODD_SERVER_MESSAGES: list[Any] = [
    # progress tokens the gateway did not issue: `isdigit` takes "²" and 5,000 digits, `int` not
    {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "agw-\u00b2", "progress": 1}},
    {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "agw-" + "9" * 5000}},
    {"jsonrpc": "2.0", "method": "notifications/progress", "params": {"progressToken": "@call", "progress": "x"}},
    {"jsonrpc": "2.0", "method": "notifications/progress", "params": "@call"},
    # answers whose ids cannot be looked up (a list, an object) or equal the gateway's (true)
    {"jsonrpc": "2.0", "id": [], "result": {}},
    {"jsonrpc": "2.0", "id": {"a": 1}, "error": {"code": "x", "message": 5}},
    {"jsonrpc": "2.0", "id": True, "result": {}},
    {"jsonrpc": "2.0", "id": 1.0, "result": {}},
    {"jsonrpc": "2.0", "method": "notifications/message", "params": 5},
    {"jsonrpc": "2.0", "id": [], "method": "roots/list"},
]


@pytest.mark.parametrize("index", range(len(_ODD_SERVER_MESSAGES)))
def test_mcp_server_messages_of_odd_shapes_cost_only_themselves(
    gateway: Any, index: int, request: pytest.FixtureRequest
) -> None:
    """A stdio server that writes, before each answer, a message whose progress token or id the
    gateway's reader tripped on (ValueError from `int("²")`, TypeError from looking up a list):
    the reader stopped, the server was taken for one that closed its stdout and was stopped,
    and the call failed. The message is dropped now and the call answered."""
    spec = {"tools": ["t"], "before_answer": [_ODD_SERVER_MESSAGES[index]]}
    target = python_stdio_target("h", "tests.support.hostile_mcp_server", "--name", "h", "--spec", json.dumps(spec))
    port = free_port()
    gw = gateway(mcp_config(port, [target]))
    surface = McpSurface(gw, f"http://127.0.0.1:{port}/mcp")
    request.addfinalizer(surface.client.close)
    surface.start()
    since = len(gw.output())
    for i in range(2):
        call = {"name": "t", "arguments": {}, "_meta": {"progressToken": f"p{i}"}}
        answer = surface.legacy({"jsonrpc": "2.0", "id": 10 + i, "method": "tools/call", "params": call})
        assert '"text":"h:t"' in answer.text, answer.text
    modern = {"name": "t", "arguments": {}, "_meta": {**ENVELOPE, "progressToken": 5}}
    answer = surface.modern({"jsonrpc": "2.0", "id": 20, "method": "tools/call", "params": modern})
    # (a server request first, roots/list, is an input_required round for a modern client)
    assert '"text":"h:t"' in answer.text or answer.json()["result"]["resultType"] == "input_required", answer.text
    assert "closed its stdout" not in gw.output()[since:]
    assert_clean_log(gw, since)


@pytest.mark.parametrize("owner", ["1" * 5000, "\u00b2", "99999999999"])
def test_mcp_legacy_session_of_an_odd_owner_is_not_found(gateway: Any, owner: str) -> None:
    """A legacy SSE ``?sessionId=<owner>.<id>`` names the worker that holds the session; with
    several workers an owner of 5,000 digits became a socket file name too long to stat: a 500
    and a traceback per request, before any session was checked."""
    port = free_port()
    gw = gateway(mcp_config(port, [stdio_target("alpha")]), workers=2)
    since = len(gw.output())
    answer = httpx.post(
        f"http://127.0.0.1:{port}/mcp",
        params={"sessionId": f"{owner}.x"},
        content=b'{"jsonrpc":"2.0","id":1,"method":"ping"}',
        headers={"accept": MCP_ACCEPT, "content-type": "application/json"},
        timeout=10,
    )
    assert answer.status_code == 404, answer.text
    assert answer.json()["error"]["code"] == -32600
    assert_clean_log(gw, since)


def test_cors_origin_with_a_port_of_thousands_of_digits(gateway: Any, upstream: Any) -> None:
    """A cors policy that lists origins parsed the client's ``Origin`` port with ``int``, which
    refuses more than 4,300 digits: a preflight got a 500, a simple request a dropped
    connection, each with a traceback. Such an origin is one not allowed."""
    up = upstream()
    port = free_port()
    cors = {"allowOrigins": ["https://app.example", "http://*.example.com"], "allowMethods": ["GET"]}
    gw = gateway(binds(port, [{"policies": {"cors": cors}, "backends": [{"host": up.address}]}]))
    since = len(gw.output())
    origin = "http://a.example.com:" + "1" * 5000
    headers = {"origin": origin, "access-control-request-method": "GET"}
    with httpx.Client(timeout=10) as client:
        preflight = client.options(f"http://127.0.0.1:{port}/x", headers=headers)
        assert preflight.status_code < 500, preflight.text
        assert "access-control-allow-origin" not in preflight.headers
        simple = client.get(f"http://127.0.0.1:{port}/x", headers={"origin": origin})
        assert simple.status_code == 200
        assert "access-control-allow-origin" not in simple.headers
    assert_clean_log(gw, since)


@pytest.mark.parametrize("error", [{"code": "x", "message": 5}, [], "boom", {"code": True}, {"code": 1.5}])
def test_mcp_error_objects_of_odd_shapes(mcp: McpSurface, error: Any) -> None:
    """A client's answer to a server request (routed by the ``agw/<target>/<id>`` the gateway
    gave it) whose error has a code that is not an integer, or is not an object: `int("x")`
    raised while the gateway read it, a 500 and a traceback per message."""
    since = len(mcp.gw.output())
    for target in ("alpha", "beta"):
        answer = mcp.legacy({"jsonrpc": "2.0", "id": f"agw/{target}/12345", "error": error})
        assert answer.status_code == 202, answer.text
    assert mcp.legacy({"jsonrpc": "2.0", "id": 5, "method": "ping"}).status_code == 200
    assert_clean_log(mcp.gw, since)


@pytest.mark.parametrize("error", [{"code": "x", "message": 5}, [], "boom", {"code": True}, {"code": 1.5}])
def test_mcp_server_errors_of_odd_shapes(gateway: Any, error: Any, request: pytest.FixtureRequest) -> None:
    """A server's error answer of the same shapes: the call failed with a traceback, and a
    streamed (legacy) call's connection was dropped without an answer. It is -32603 now."""
    spec = {"tools": ["t"], "before_answer": [{"jsonrpc": "2.0", "id": "@id", "error": error}]}
    target = python_stdio_target("h", "tests.support.hostile_mcp_server", "--name", "h", "--spec", json.dumps(spec))
    port = free_port()
    gw = gateway(mcp_config(port, [target]))
    surface = McpSurface(gw, f"http://127.0.0.1:{port}/mcp")
    request.addfinalizer(surface.client.close)
    surface.start()
    since = len(gw.output())
    answer = surface.legacy({"jsonrpc": "2.0", "id": 10, "method": "tools/call", "params": {"name": "t"}})
    assert '"code":-32603' in answer.text, answer.text
    modern = {"name": "t", "arguments": {}, "_meta": ENVELOPE}
    answer = surface.modern({"jsonrpc": "2.0", "id": 20, "method": "tools/call", "params": modern})
    assert answer.json()["error"]["code"] == -32603, answer.text
    assert_clean_log(gw, since)
