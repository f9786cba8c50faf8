"""``llm.models[]`` fields and ``policies.ai`` keys of agentgateway, through the real daemon with
the official SDKs against the strict provider fakes: ``visibility``, ``authorization``,
``defaults``/``overrides``/``transformation``/``finalTransformation``, ``auth``, ``passthrough``,
``requestHeaders``/``responseHeaders``, ``promptCaching`` (Anthropic ``cache_control`` and Bedrock ``cachePoint`` blocks), and the route
form's ``policies.ai.routes``, ``transformations`` and ``finalTransformations``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.llm import AWS_ENV, FakeProvider, LlmSetup
from tests.support.llm_fakes import API_KEY, USAGE_IN

CLIENT_KEY = "sk-client-must-not-leak"
LONG_SYSTEM = "You are a careful assistant. " * 8
TOOL = {
    "type": "function",
    "function": {"name": "lookup", "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}},
}


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmSetup]:
    tmp = tmp_path_factory.mktemp("modelfields")
    procs: list[Any] = []
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("openai", "anthropic", "bedrock")}
        procs += fakes.values()
        o, a, b = (fakes[k].base for k in ("openai", "anthropic", "bedrock"))
        oai = {"apiKey": API_KEY, "baseUrl": o}
        caching = {"minTokens": 10, "cacheTools": True}
        models: list[dict[str, Any]] = [
            {
                "name": "hidden",
                "provider": "openAI",
                "params": {**oai, "model": "gpt-hidden"},
                "visibility": "internal",
            },
            {
                "name": "red-team-only",
                "provider": "openAI",
                "params": oai,
                "authorization": {"rules": ['request.headers["x-team"] == "red"']},
            },
            {
                "name": "shaped",
                "provider": "openAI",
                "params": oai,
                "defaults": {"temperature": 0.3},
                "overrides": {"top_p": 0.5},
                "transformation": {
                    "user": 'request.headers["x-user"]',
                    "seed": 'int(request.headers["x-seed"])',
                    "max_tokens": "llmRequest.max_tokens * 2",
                },
            },
            {
                "name": "claude-final",
                "provider": "anthropic",
                "params": {"apiKey": API_KEY, "baseUrl": a},
                "finalTransformation": {"max_tokens": "llmRequest.max_tokens + 1", "top_k": "7"},
            },
            {
                "name": "keyed",
                "provider": "openAI",
                "params": {"baseUrl": o},
                "auth": {
                    "key": {"value": API_KEY, "location": {"header": {"name": "authorization", "prefix": "Bearer "}}}
                },
            },
            {"name": "raw", "provider": "openAI", "params": oai, "passthrough": "detect", "defaults": {"seed": 1}},
            {
                "name": "headed",
                "provider": "openAI",
                "params": oai,
                "requestHeaders": {"set": {"x-tenant": "blue"}, "add": {"x-extra": "1"}},
                "responseHeaders": {"set": {"x-served-by": "headed"}, "remove": ["x-request-id"]},
            },
            {
                "name": "claude-cached",
                "provider": "anthropic",
                "params": {"apiKey": API_KEY, "baseUrl": a},
                "promptCaching": caching,
            },
            {
                "name": "bedrock-cached",
                "provider": "bedrock",
                "params": {"awsRegion": "us-east-1", "baseUrl": b, "model": "anthropic.claude-3-haiku-20240307-v1:0"},
                "promptCaching": caching,
            },
        ]
        port, route_port, guard_port = free_port(), free_port(), free_port()
        route_ai = {
            "routes": {"/v1/chat/completions": "completions", "/ask": "completions", "*": "passthrough"},
            "transformations": {"metadata": '{"team": request.headers["x-team"]}'},
            "finalTransformations": {"max_completion_tokens": "100"},
        }
        config = {
            "llm": {
                "port": port,
                "models": models,
                "virtualModels": [{"name": "front", "routing": {"weighted": {"targets": [{"model": "hidden"}]}}}],
            },
            "binds": [
                {
                    "port": guard_port,
                    "listeners": [
                        {
                            "routes": [
                                {
                                    "backends": [
                                        {
                                            "ai": {
                                                "name": "guarded-bedrock",
                                                "provider": {
                                                    "bedrock": {
                                                        "region": "us-east-1",
                                                        "model": "anthropic.claude-3-haiku-20240307-v1:0",
                                                        "guardrailIdentifier": "gr-123",
                                                        "guardrailVersion": "2",
                                                    }
                                                },
                                                "hostOverride": f"127.0.0.1:{fakes['bedrock'].port}",
                                            }
                                        }
                                    ]
                                }
                            ]
                        }
                    ],
                },
                {
                    "port": route_port,
                    "listeners": [
                        {
                            "routes": [
                                {
                                    "backends": [
                                        {
                                            "ai": {
                                                "name": "openai",
                                                "provider": {"openAI": {"model": "gpt-4o-mini"}},
                                                "hostOverride": f"127.0.0.1:{fakes['openai'].port}",
                                                "pathPrefix": "/v1",
                                            }
                                        }
                                    ],
                                    "policies": {"backendAuth": {"key": API_KEY}, "ai": route_ai},
                                }
                            ]
                        }
                    ],
                },
            ],
        }
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config, env=AWS_ENV)
        procs.append(gw)
        setup = LlmSetup(gw, port, fakes)
        setup.route_port = route_port
        setup.guard_port = guard_port  # type: ignore[attr-defined]
        yield setup
        setup.close()
    finally:
        for p in reversed(procs):
            p.stop()


def oa(llm: LlmSetup) -> openai.OpenAI:
    return llm.openai(key=CLIENT_KEY)  # type: ignore[no-any-return]


def sent(llm: LlmSetup, kind: str) -> dict[str, Any]:
    return json.loads(llm.fakes[kind].last()["body"])  # type: ignore[no-any-return]


HI = [{"role": "user", "content": "hi"}]


def test_internal_models_are_reached_through_virtual_models_only(llm: LlmSetup) -> None:
    with pytest.raises(openai.NotFoundError):
        oa(llm).chat.completions.create(model="hidden", messages=HI)  # type: ignore[arg-type]
    r = oa(llm).chat.completions.create(model="front", messages=HI)  # type: ignore[arg-type]
    assert r.choices[0].message.content
    assert sent(llm, "openai")["model"] == "gpt-hidden"
    ids = [m.id for m in oa(llm).models.list()]
    assert "hidden" not in ids and "front" in ids and "shaped" in ids


def test_model_authorization(llm: LlmSetup) -> None:
    calls = llm.fakes["openai"].count()
    with pytest.raises(openai.PermissionDeniedError):
        oa(llm).chat.completions.create(model="red-team-only", messages=HI)  # type: ignore[arg-type]
    with pytest.raises(anthropic.PermissionDeniedError):
        llm.anthropic(key=CLIENT_KEY).messages.create(
            model="red-team-only", max_tokens=8, messages=HI, extra_headers={"x-team": "blue"}
        )
    assert llm.fakes["openai"].count() == calls
    r = oa(llm).chat.completions.create(
        model="red-team-only",
        messages=HI,  # type: ignore[arg-type]
        extra_headers={"x-team": "red"},
    )
    assert r.choices[0].message.content


def test_model_defaults_overrides_and_transformation(llm: LlmSetup) -> None:
    oa(llm).chat.completions.create(
        model="shaped",
        messages=HI,  # type: ignore[arg-type]
        top_p=0.9,
        seed=5,
        max_tokens=10,
        extra_headers={"x-user": "alice", "x-seed": "42"},
    )
    body = sent(llm, "openai")
    assert (body["temperature"], body["top_p"], body["user"], body["seed"], body["max_tokens"]) == (
        0.3,
        0.5,
        "alice",
        42,
        20,
    )
    # an expression that fails removes its field (agentgateway): no x-seed header, no seed
    oa(llm).chat.completions.create(
        model="shaped",
        messages=HI,  # type: ignore[arg-type]
        seed=5,
        temperature=1.0,
        max_tokens=3,
        extra_headers={"x-user": "bob"},
    )
    body = sent(llm, "openai")
    assert "seed" not in body and body["temperature"] == 1.0 and body["user"] == "bob"


def test_final_transformation_applies_to_the_provider_request(llm: LlmSetup) -> None:
    # Chat → Messages: max_tokens is the translation's 4096, then the final transformation's + 1
    oa(llm).chat.completions.create(model="claude-final", messages=HI)  # type: ignore[arg-type]
    body = sent(llm, "anthropic")
    assert body["max_tokens"] == 4097 and body["top_k"] == 7


def test_model_auth_at_a_configured_location(llm: LlmSetup) -> None:
    r = oa(llm).chat.completions.create(model="keyed", messages=HI)  # type: ignore[arg-type]
    assert r.choices[0].message.content
    seen = llm.fakes["openai"].last()
    assert seen["headers"]["authorization"] == f"Bearer {API_KEY}"


def test_passthrough_detect(llm: LlmSetup) -> None:
    raw = b'{"model":"raw","messages":[{"role":"user","content":"as is"}],  "n": 1}'
    r = httpx.post(
        f"{llm.url}/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json", "authorization": f"Bearer {CLIENT_KEY}"},
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["usage"]["prompt_tokens"] == USAGE_IN
    seen = llm.fakes["openai"].last()
    assert seen["body"].encode() == raw  # not rewritten: no model, no defaults
    assert seen["path"] == "/v1/chat/completions" and CLIENT_KEY not in json.dumps(seen["headers"])
    line = llm.access_line("gen_ai.request.model=raw")
    assert f"gen_ai.usage.input_tokens={USAGE_IN}" in line


def test_prompt_caching_anthropic(llm: LlmSetup) -> None:
    messages = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "second"},
    ]
    oa(llm).chat.completions.create(model="claude-cached", messages=messages, tools=[TOOL])  # type: ignore[arg-type, list-item]
    body = sent(llm, "anthropic")
    assert body["system"][-1]["cache_control"] == {"type": "ephemeral"}
    assert body["messages"][1]["content"][-1]["cache_control"] == {"type": "ephemeral"}  # the history
    assert "cache_control" not in json.dumps(body["messages"][2])  # not the current turn
    assert body["tools"][-1]["cache_control"] == {"type": "ephemeral"}
    # a Messages client: the same markers on the request it sent, its own marker kept
    llm.anthropic(key=CLIENT_KEY).messages.create(
        model="claude-cached",
        max_tokens=16,
        system=[{"type": "text", "text": LONG_SYSTEM, "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
        messages=[
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": "reply"},
            {"role": "user", "content": "second"},
        ],
    )
    body = sent(llm, "anthropic")
    assert body["system"][0]["cache_control"] == {"type": "ephemeral", "ttl": "1h"}
    assert body["messages"][1]["content"] == [{"type": "text", "text": "reply", "cache_control": {"type": "ephemeral"}}]
    # a short system prompt is under minTokens: not marked
    oa(llm).chat.completions.create(
        model="claude-cached",
        messages=[{"role": "system", "content": "brief"}, {"role": "user", "content": "x"}],  # type: ignore[list-item]
    )
    assert "cache_control" not in json.dumps(sent(llm, "anthropic"))


def test_prompt_caching_bedrock(llm: LlmSetup) -> None:
    messages = [
        {"role": "system", "content": LONG_SYSTEM},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "reply"},
        {"role": "user", "content": "second"},
    ]
    oa(llm).chat.completions.create(model="bedrock-cached", messages=messages, tools=[TOOL])  # type: ignore[arg-type, list-item]
    body = sent(llm, "bedrock")
    point = {"cachePoint": {"type": "default"}}
    assert body["system"][-1] == point
    assert body["messages"][1]["content"][-1] == point
    assert body["toolConfig"]["tools"][-1] == point


def test_routes_transformations_and_final_transformations(llm: LlmSetup) -> None:
    client = openai.OpenAI(base_url=f"http://127.0.0.1:{llm.route_port}/v1", api_key=CLIENT_KEY, max_retries=0)
    with client:
        client.chat.completions.create(model="any", messages=HI, extra_headers={"x-team": "red"})  # type: ignore[arg-type]
    body = sent(llm, "openai")
    assert body["metadata"] == {"team": "red"} and body["max_completion_tokens"] == 100
    assert body["model"] == "gpt-4o-mini"
    # "/ask" is a Chat Completions path by routes
    r = httpx.post(f"http://127.0.0.1:{llm.route_port}/ask", json={"model": "m", "messages": HI}, timeout=10)
    assert r.status_code == 200 and r.json()["object"] == "chat.completion"
    assert llm.fakes["openai"].last()["path"] == "/v1/chat/completions"
    # everything else passes through to the provider as it is (its answer relayed)
    r = httpx.get(f"http://127.0.0.1:{llm.route_port}/v1/files?limit=2", timeout=10)
    assert r.status_code == 405 and r.json()["error"]["message"] == "method not allowed"
    seen = llm.fakes["openai"].last()
    assert seen["path"] == "/v1/files?limit=2" and seen["headers"]["authorization"] == f"Bearer {API_KEY}"


def test_model_request_and_response_headers(llm: LlmSetup) -> None:
    r = oa(llm).chat.completions.with_raw_response.create(model="headed", messages=HI)  # type: ignore[arg-type]
    assert r.headers["x-served-by"] == "headed" and "x-request-id" not in r.headers
    assert r.parse().choices[0].message.content
    seen = llm.fakes["openai"].last()["headers"]
    assert seen["x-tenant"] == "blue" and seen["x-extra"] == "1"
    assert seen["authorization"] == f"Bearer {API_KEY}"  # the gateway's key, untouched
    # a streamed answer gets them too
    with httpx.stream(
        "POST",
        f"{llm.url}/v1/chat/completions",
        json={"model": "headed", "messages": HI, "stream": True},
        headers={"authorization": f"Bearer {CLIENT_KEY}"},
        timeout=10,
    ) as stream:
        assert stream.status_code == 200 and stream.headers["x-served-by"] == "headed"
        stream.read()
    # another model is not affected
    r = oa(llm).chat.completions.with_raw_response.create(model="shaped", messages=HI)  # type: ignore[arg-type]
    assert "x-served-by" not in r.headers and "x-tenant" not in llm.fakes["openai"].last()["headers"]


def test_bedrock_provider_guardrail_goes_with_every_converse_call(llm: LlmSetup) -> None:
    r = llm.openai(llm.guard_port).chat.completions.create(model="any", messages=HI)  # type: ignore[attr-defined]
    assert r.choices[0].message.content
    assert sent(llm, "bedrock")["guardrailConfig"] == {"guardrailIdentifier": "gr-123", "guardrailVersion": "2"}
