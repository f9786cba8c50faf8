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
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.gateway import Gateway, UpstreamServer, binds, free_port
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
        gw = Gateway(
            gw_dir, {"llm": {"port": port, "models": model_entries(fakes), "policies": policies}}, env=AWS_ENV
        )
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
    assert httpx.post(
        f"{admin.admin_url}/ui/api/config/validate", json={"text": "a: " + "[" * 5000}, headers=ADMIN_HEADERS
    ).json()["errors"][0]["message"].startswith("invalid YAML")
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
