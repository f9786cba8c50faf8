"""agentgateway's provider surface through the real daemon, with the official SDKs: the 13 provider
presets and ``custom`` providers (each against a strict OpenAI-compatible fake reached through
``hostOverride``/``baseUrl``: the preset's paths and bearer key are checked on every call), the
value forms of ``provider`` (preset string, ``{reference}``, ``{custom}``), and the fixes of
issue 12: ``baseUrl`` with an empty path keeps the default path, ``hostOverride`` keeps the
client's path for the provider's own API only, Azure Foundry's hosts and paths, Gemini's
OpenAI-compatible endpoint by default."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, free_port
from tests.support.llm import FakeProvider, LlmSetup
from tests.support.llm_fakes import API_KEY

CLIENT_KEY = "sk-client-must-not-leak"

# preset → (chat path, messages path or None, responses path, embeddings path, rerank path)
PRESETS: dict[str, tuple[str, str | None, str | None, str | None, str | None]] = {
    "cohere": ("/compatibility/v1/chat/completions", None, None, "/compatibility/v1/embeddings", "/v2/rerank"),
    "ollama": ("/v1/chat/completions", None, "/v1/responses", "/v1/embeddings", None),
    "baseten": ("/v1/chat/completions", "/v1/messages", None, None, None),
    "cerebras": ("/v1/chat/completions", None, None, None, None),
    "deepinfra": ("/v1/openai/chat/completions", "/anthropic/v1/messages", None, "/v1/openai/embeddings", None),
    "deepseek": ("/v1/chat/completions", "/anthropic/v1/messages", None, None, None),
    "groq": ("/openai/v1/chat/completions", None, "/openai/v1/responses", None, None),
    "huggingface": ("/v1/chat/completions", None, "/v1/responses", None, None),
    "mistral": ("/v1/chat/completions", None, None, "/v1/embeddings", None),
    "openrouter": (
        "/api/v1/chat/completions",
        "/api/v1/messages",
        "/api/v1/responses",
        "/api/v1/embeddings",
        "/api/v1/rerank",
    ),
    "togetherai": ("/v1/chat/completions", None, None, "/v1/embeddings", "/v1/rerank"),
    "xai": ("/v1/chat/completions", None, "/v1/responses", None, None),
    "fireworks": (
        "/inference/v1/chat/completions",
        "/inference/v1/messages",
        "/inference/v1/responses",
        "/inference/v1/embeddings",
        "/inference/v1/rerank",
    ),
}


@pytest.fixture(scope="module")
def llm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LlmSetup]:
    tmp = tmp_path_factory.mktemp("providers")
    procs: list[Any] = []
    try:
        fakes = {k: FakeProvider(tmp, k) for k in ("compat", "openai", "anthropic", "gemini", "azure")}
        procs += fakes.values()
        compat = f"127.0.0.1:{fakes['compat'].port}"
        models: list[dict[str, Any]] = [
            {"name": f"{p}-m", "provider": p, "params": {"apiKey": API_KEY, "hostOverride": compat}} for p in PRESETS
        ]
        models += [
            {
                "name": "custom-m",
                "provider": {
                    "custom": {
                        "formats": [{"type": "completions"}, {"type": "messages", "path": "/api/messages"}],
                        "providerOverride": "acme",
                    }
                },
                "params": {"apiKey": API_KEY, "baseUrl": f"http://{compat}/custom/v2", "model": "upstream-custom"},
            },
            # baseUrl with an empty path: the provider's default path (/v1/...)
            {
                "name": "openai-root",
                "provider": "openai",
                "params": {"apiKey": API_KEY, "baseUrl": fakes["openai"].base},
            },
            {
                "name": "anthropic-root",
                "provider": "anthropic",
                "params": {"apiKey": API_KEY, "baseUrl": fakes["anthropic"].base + "/"},
            },
            # hostOverride without a path prefix: the client's path for the provider's own API
            {"name": "openai-host", "provider": "openAI", "params": {"apiKey": API_KEY, "hostOverride": compat}},
            {
                "name": "gemini-compat",
                "provider": "gemini",
                "params": {"apiKey": API_KEY, "baseUrl": fakes["gemini"].base},
            },
            {
                "name": "foundry-gpt",
                "provider": "azure",
                "params": {
                    "apiKey": API_KEY,
                    "baseUrl": fakes["azure"].base,
                    "azureResourceType": "foundry",
                    "azureProjectName": "proj",
                    "model": "gpt-4o",
                },
            },
            {
                "name": "foundry-claude",
                "provider": "azure",
                "params": {
                    "apiKey": API_KEY,
                    "baseUrl": fakes["azure"].base,
                    "azureResourceType": "foundry",
                    "azureProjectName": "proj",
                    "model": "claude-haiku-4-5",
                },
            },
            {"name": "by-reference", "provider": {"reference": "shared-anthropic"}, "params": {"model": "claude-ref"}},
        ]
        port = free_port()
        config = {
            "llm": {
                "port": port,
                "providers": [
                    {
                        "name": "shared-anthropic",
                        "provider": "anthropic",
                        "params": {"apiKey": API_KEY, "baseUrl": fakes["anthropic"].base + "/v1"},
                    }
                ],
                "models": models,
            }
        }
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config)
        procs.append(gw)
        setup = LlmSetup(gw, port, fakes)
        yield setup
        setup.close()
    finally:
        for p in reversed(procs):
            p.stop()


def oa(llm: LlmSetup) -> openai.OpenAI:
    return llm.openai(key=CLIENT_KEY)  # type: ignore[no-any-return]


def an(llm: LlmSetup) -> anthropic.Anthropic:
    return llm.anthropic(key=CLIENT_KEY)  # type: ignore[no-any-return]


def last(llm: LlmSetup, kind: str) -> dict[str, Any]:
    seen = llm.fakes[kind].last()
    assert CLIENT_KEY not in json.dumps(seen["headers"]), seen["headers"]
    return seen


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_chat(llm: LlmSetup, preset: str) -> None:
    r = oa(llm).chat.completions.create(model=f"{preset}-m", messages=[{"role": "user", "content": "hi preset"}])
    assert r.choices[0].message.content and r.choices[0].message.content.endswith("You said: hi preset")
    seen = last(llm, "compat")
    assert seen["path"] == PRESETS[preset][0]
    assert seen["headers"]["authorization"] == f"Bearer {API_KEY}"
    assert json.loads(seen["body"])["model"] == f"{preset}-m"
    chunks = list(
        oa(llm).chat.completions.create(
            model=f"{preset}-m", messages=[{"role": "user", "content": "stream it"}], stream=True
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices).endswith("You said: stream it")
    assert last(llm, "compat")["path"] == PRESETS[preset][0]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_messages(llm: LlmSetup, preset: str) -> None:
    """An Anthropic client: the preset's Messages API when it has one (passed through), else
    its Chat Completions API (translated)."""
    r = an(llm).messages.create(model=f"{preset}-m", max_tokens=64, messages=[{"role": "user", "content": "hey"}])
    assert r.content[0].type == "text" and r.content[0].text.endswith("You said: hey")
    seen = last(llm, "compat")
    messages_path = PRESETS[preset][1]
    assert seen["path"] == (messages_path or PRESETS[preset][0])
    assert seen["headers"]["authorization"] == f"Bearer {API_KEY}"
    if messages_path:  # the client's anthropic-version goes with a Messages request
        assert re.fullmatch(r"20\d\d-\d\d-\d\d", seen["headers"]["anthropic-version"])


@pytest.mark.parametrize("preset", [p for p, paths in PRESETS.items() if paths[2]])
def test_preset_responses(llm: LlmSetup, preset: str) -> None:
    r = oa(llm).responses.create(model=f"{preset}-m", input="hello responses")
    assert r.output_text
    assert last(llm, "compat")["path"] == PRESETS[preset][2]


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_embeddings(llm: LlmSetup, preset: str) -> None:
    path = PRESETS[preset][3]
    if path is None:
        with pytest.raises(openai.BadRequestError) as err:
            oa(llm).embeddings.create(model=f"{preset}-m", input="x")
        assert "no embeddings API" in str(err.value)
        return
    r = oa(llm).embeddings.create(model=f"{preset}-m", input=["a", "b"])
    assert [d.index for d in r.data] == [0, 1]
    assert last(llm, "compat")["path"] == path


@pytest.mark.parametrize("preset", list(PRESETS))
def test_preset_rerank(llm: LlmSetup, preset: str) -> None:
    body = {"model": f"{preset}-m", "query": "red fruit", "documents": ["a red apple", "a blue car"], "top_n": 1}
    r = httpx.post(f"{llm.url}/v2/rerank", json=body, headers={"authorization": f"Bearer {CLIENT_KEY}"}, timeout=10)
    path = PRESETS[preset][4]
    if path is None:
        assert r.status_code == 400 and "no rerank API" in r.json()["error"]["message"]
        return
    assert r.status_code == 200, r.text
    assert r.json()["results"] == [{"index": 0, "relevance_score": 0.5}]
    seen = last(llm, "compat")
    assert seen["path"] == path and json.loads(seen["body"]) == body


def test_custom_provider_formats(llm: LlmSetup) -> None:
    r = oa(llm).chat.completions.create(model="custom-m", messages=[{"role": "user", "content": "hi custom"}])
    assert r.choices[0].message.content and r.choices[0].message.content.endswith("hi custom")
    seen = last(llm, "compat")
    assert seen["path"] == "/custom/v2/chat/completions"  # the baseUrl's path replaces /v1
    assert json.loads(seen["body"])["model"] == "upstream-custom"
    a = an(llm).messages.create(model="custom-m", max_tokens=32, messages=[{"role": "user", "content": "yo"}])
    assert a.content[0].type == "text"
    assert last(llm, "compat")["path"] == "/api/messages"  # the format's own path
    line = llm.access_line("gen_ai.request.model=custom-m")
    assert "gen_ai.provider.name=acme" in line


def test_base_url_with_empty_path_keeps_the_default_path(llm: LlmSetup) -> None:
    """baseUrl: http://host:port (no path): /v1/chat/completions, not /chat/completions."""
    r = oa(llm).chat.completions.create(model="openai-root", messages=[{"role": "user", "content": "root"}])
    assert r.choices[0].message.content and r.choices[0].message.content.endswith("root")
    assert last(llm, "openai")["path"] == "/v1/chat/completions"
    m = an(llm).messages.create(model="anthropic-root", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert m.content[0].type == "text"
    assert last(llm, "anthropic")["path"] == "/v1/messages"


def test_host_override_keeps_the_client_path_for_the_same_api(llm: LlmSetup) -> None:
    """agentgateway forwards the client's path with hostOverride and no pathPrefix; a request
    translated to another API (Messages → Chat Completions) takes the provider's default path."""
    client = openai.OpenAI(base_url=f"{llm.url}/team-a/v1", api_key=CLIENT_KEY, max_retries=0)
    with client:
        client.chat.completions.create(model="openai-host", messages=[{"role": "user", "content": "x"}])
    assert last(llm, "compat")["path"] == "/team-a/v1/chat/completions"
    an(llm).messages.create(model="openai-host", max_tokens=16, messages=[{"role": "user", "content": "x"}])
    assert last(llm, "compat")["path"] == "/v1/chat/completions"


def test_gemini_goes_to_its_openai_compatible_endpoint(llm: LlmSetup) -> None:
    r = oa(llm).chat.completions.create(model="gemini-compat", messages=[{"role": "user", "content": "hi gemini"}])
    assert r.choices[0].message.content and r.choices[0].message.content.endswith("hi gemini")
    seen = last(llm, "gemini")
    assert seen["path"] == "/v1beta/openai/chat/completions"
    assert seen["headers"]["authorization"] == f"Bearer {API_KEY}" and "x-goog-api-key" not in seen["headers"]
    e = oa(llm).embeddings.create(model="gemini-compat", input="x")
    assert e.data and last(llm, "gemini")["path"] == "/v1beta/openai/embeddings"


def test_azure_foundry(llm: LlmSetup) -> None:
    r = oa(llm).chat.completions.create(model="foundry-gpt", messages=[{"role": "user", "content": "foundry"}])
    assert r.choices[0].message.content
    seen = last(llm, "azure")
    assert seen["path"] == "/api/projects/proj/openai/v1/chat/completions"
    assert seen["headers"]["api-key"] == API_KEY
    # Foundry's Claude models take Anthropic's Messages API (a Chat client is translated to it)
    c = oa(llm).chat.completions.create(model="foundry-claude", messages=[{"role": "user", "content": "claude"}])
    assert c.choices[0].message.content and c.choices[0].message.content.endswith("claude")
    seen = last(llm, "azure")
    assert seen["path"] == "/anthropic/v1/messages"
    assert seen["headers"]["anthropic-version"] == "2023-06-01" and seen["headers"]["api-key"] == API_KEY


def test_provider_reference(llm: LlmSetup) -> None:
    r = an(llm).messages.create(model="by-reference", max_tokens=16, messages=[{"role": "user", "content": "ref"}])
    assert r.content[0].type == "text"
    seen = last(llm, "anthropic")
    assert seen["path"] == "/v1/messages" and json.loads(seen["body"])["model"] == "claude-ref"
    assert seen["headers"]["x-api-key"] == API_KEY
