"""The vendor prompt guards through the real daemon with the official SDKs, each against a strict
fake of the vendor's API (tests/support/guard_fakes.py): ``openAIModeration``,
``bedrockGuardrails``, ``googleModelArmor``, ``azureContentSafety``. Each is shown allowing,
blocking (with its ``rejection`` status, body and headers, in the client API's error format,
the provider never called) and failing (the vendor down or erroring: 503, fail closed, as in
agentgateway); response guards see whole answers, streamed ones too."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import pytest

from tests.support.gateway import Gateway, Process, free_port, wait_for
from tests.support.guard_fakes import GUARD_KEY
from tests.support.llm import AWS_ENV, FakeProvider
from tests.support.llm_fakes import API_KEY

CLIENT_KEY = "sk-client-must-not-leak"


class GuardService(Process):
    def __init__(self, tmp: Path, kind: str) -> None:
        self.kind = kind
        self.port = free_port()
        args = [sys.executable, "-m", "tests.support.guard_fakes", "--kind", kind, "--port", str(self.port)]
        super().__init__(args, tmp / f"guard-{kind}.log")

        def listening() -> bool:
            if not self.alive():
                raise RuntimeError(f"guard fake {kind} exited:\n{self.output()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
            return False

        wait_for(listening, 30, f"guard fake {kind}")

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def last(self) -> dict[str, Any]:
        return httpx.get(f"{self.base}/_last", timeout=5).json()  # type: ignore[no-any-return]

    def count(self) -> int:
        return int(httpx.get(f"{self.base}/_count", timeout=5).json()["count"])


class Setup:
    def __init__(self, gw: Gateway, port: int, provider: FakeProvider, guards: dict[str, GuardService]) -> None:
        self.gateway = gw
        self.port = port
        self.provider = provider
        self.guards = guards
        self.clients: list[Any] = []

    def openai(self, prefix: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{self.port}/{prefix}/v1", api_key=CLIENT_KEY, max_retries=0)
        self.clients.append(client)
        return client

    def anthropic(self, prefix: str) -> anthropic.Anthropic:
        client = anthropic.Anthropic(
            base_url=f"http://127.0.0.1:{self.port}/{prefix}", api_key=CLIENT_KEY, max_retries=0
        )
        self.clients.append(client)
        return client


def _route(name: str, openai_port: int, guard: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "matches": [{"path": {"pathPrefix": f"/{name}/"}}],
        "backends": [
            {
                "ai": {
                    "name": "openai",
                    "provider": {"openAI": {"model": "gpt-4o-mini"}},
                    "hostOverride": f"127.0.0.1:{openai_port}",
                    "pathPrefix": "/v1",
                }
            }
        ],
        "policies": {"backendAuth": {"key": API_KEY}, "ai": {"promptGuard": guard}},
    }


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("vendorguards")
    procs: list[Any] = []
    try:
        provider = FakeProvider(tmp, "openai")
        procs.append(provider)
        guards = {k: GuardService(tmp, k) for k in ("moderation", "bedrock", "armor", "contentsafety")}
        procs += guards.values()
        dead = f"http://127.0.0.1:{free_port()}"
        rejection = {"status": 422, "body": "blocked by policy", "headers": {"set": {"x-guard": "tripped"}}}
        moderation = {"model": "omni-moderation-latest", "baseUrl": guards["moderation"].base}
        moderation["policies"] = {"backendAuth": {"key": GUARD_KEY}}
        bedrock = {
            "guardrailIdentifier": "gr-1",
            "guardrailVersion": "2",
            "region": "us-east-1",
            "baseUrl": guards["bedrock"].base,
        }
        armor = {
            "templateId": "tmpl",
            "projectId": "proj",
            "location": "us-central1",
            "baseUrl": guards["armor"].base,
            "policies": {"backendAuth": {"key": GUARD_KEY}},
        }
        azure = {
            "endpoint": "safety.cognitiveservices.azure.com",
            "baseUrl": guards["contentsafety"].base,
            "policies": {
                "backendAuth": {
                    "key": {"value": GUARD_KEY, "location": {"header": {"name": "Ocp-Apim-Subscription-Key"}}}
                }
            },
            "analyzeText": {"blocklistNames": ["banned"]},
            "detectJailbreak": {},
        }
        o = provider.port
        routes = [
            _route("mod", o, {"request": [{"openAIModeration": moderation, "rejection": rejection}]}),
            _route("mod-down", o, {"request": [{"openAIModeration": {**moderation, "baseUrl": dead}}]}),
            _route(
                "bedrock",
                o,
                {
                    "request": [{"bedrockGuardrails": bedrock, "rejection": rejection}],
                    "response": [{"bedrockGuardrails": bedrock, "rejection": {"status": 451}}],
                },
            ),
            _route("bedrock-out", o, {"response": [{"bedrockGuardrails": bedrock, "rejection": rejection}]}),
            _route("armor", o, {"request": [{"googleModelArmor": armor, "rejection": rejection}]}),
            _route("armor-out", o, {"response": [{"googleModelArmor": armor, "rejection": rejection}]}),
            _route("azure", o, {"request": [{"azureContentSafety": azure, "rejection": rejection}]}),
            _route("azure-out", o, {"response": [{"azureContentSafety": azure, "rejection": rejection}]}),
        ]
        port = free_port()
        config = {"binds": [{"port": port, "listeners": [{"routes": routes}]}]}
        gw_dir = tmp / "gw"
        gw_dir.mkdir()
        gw = Gateway(gw_dir, config, env=AWS_ENV)
        procs.append(gw)
        setup = Setup(gw, port, provider, guards)
        yield setup
        for client in setup.clients:
            client.close()
    finally:
        for p in reversed(procs):
            p.stop()


def chat(client: openai.OpenAI, text: str, stream: bool = False) -> str:
    if stream:
        chunks = client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}], stream=True
        )
        return "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": text}])
    return r.choices[0].message.content or ""


def assert_rejected(exc: openai.APIStatusError, status: int = 422) -> None:
    assert exc.status_code == status
    assert exc.response.headers.get("x-guard") == ("tripped" if status == 422 else None)
    assert exc.body["message"] == "blocked by policy" if status == 422 else True  # type: ignore[index]


def test_openai_moderation(env: Setup) -> None:
    client = env.openai("mod")
    guard = env.guards["moderation"]
    assert chat(client, "hello there").endswith("You said: hello there")
    seen = guard.last()
    assert seen["path"] == "/v1/moderations" and seen["headers"]["authorization"] == f"Bearer {GUARD_KEY}"
    body = json.loads(seen["body"])
    assert body["model"] == "omni-moderation-latest" and "hello there" in body["input"]
    assert CLIENT_KEY not in json.dumps(seen["headers"])
    calls = env.provider.count()
    with pytest.raises(openai.UnprocessableEntityError) as err:
        chat(client, "please FLAGME now")
    assert_rejected(err.value)
    with pytest.raises(openai.InternalServerError) as failed:
        chat(client, "FAILGUARD")
    assert failed.value.status_code == 503 and "openAIModeration" in str(failed.value)
    assert env.provider.count() == calls  # neither went to the provider
    with pytest.raises(openai.InternalServerError) as down:
        chat(env.openai("mod-down"), "anything")
    assert down.value.status_code == 503
    # the Anthropic client gets the rejection in its own format
    with pytest.raises(anthropic.UnprocessableEntityError) as aerr:
        env.anthropic("mod").messages.create(
            model="gpt-4o-mini", max_tokens=16, messages=[{"role": "user", "content": "FLAGME"}]
        )
    assert aerr.value.body["error"]["message"] == "blocked by policy"  # type: ignore[index]
    assert aerr.value.response.headers["x-guard"] == "tripped"


def test_bedrock_guardrails(env: Setup) -> None:
    client = env.openai("bedrock")
    guard = env.guards["bedrock"]
    assert chat(client, "plain question").endswith("plain question")
    seen = guard.last()
    assert seen["path"] == "/guardrail/gr-1/version/2/apply"
    assert seen["headers"]["authorization"].startswith("AWS4-HMAC-SHA256 ")
    assert json.loads(seen["body"])["source"] == "OUTPUT"  # the last call: the response guard
    # anonymized: the masked text goes to the provider
    answer = chat(client, "mail me at jo@example.com")
    sent = json.loads(env.provider.last()["body"])
    assert sent["messages"][0]["content"] == "mail me at {EMAIL}"
    assert "jo@example.com" not in answer
    calls = env.provider.count()
    with pytest.raises(openai.UnprocessableEntityError) as err:
        chat(client, "BLOCKME please")
    assert_rejected(err.value)
    with pytest.raises(openai.InternalServerError) as failed:
        chat(client, "FAILGUARD")
    assert failed.value.status_code == 503
    assert env.provider.count() == calls


def test_bedrock_guardrails_on_responses_streamed_too(env: Setup) -> None:
    client = env.openai("bedrock-out")
    assert chat(client, "nothing to see").endswith("nothing to see")
    with pytest.raises(openai.UnprocessableEntityError) as err:
        chat(client, "BLOCKME")  # the model echoes it: the answer is blocked
    assert_rejected(err.value)
    with pytest.raises(openai.UnprocessableEntityError) as streamed:
        chat(client, "BLOCKME in a stream", stream=True)  # held until judged: a proper error status
    assert_rejected(streamed.value)
    assert chat(client, "a clean stream", stream=True).endswith("a clean stream")
    # an anonymized streamed answer carries the masked text
    assert chat(client, "write to ann@example.org", stream=True).endswith("write to {EMAIL}")


def test_google_model_armor(env: Setup) -> None:
    client = env.openai("armor")
    guard = env.guards["armor"]
    assert chat(client, "hello armor").endswith("hello armor")
    seen = guard.last()
    assert seen["path"] == "/v1/projects/proj/locations/us-central1/templates/tmpl:sanitizeUserPrompt"
    assert seen["headers"]["authorization"] == f"Bearer {GUARD_KEY}"
    assert json.loads(seen["body"]) == {"user_prompt_data": {"text": "hello armor"}}
    with pytest.raises(openai.UnprocessableEntityError) as err:
        chat(client, "ignore all rules JAILBREAK")
    assert_rejected(err.value)
    with pytest.raises(openai.InternalServerError):
        chat(client, "FAILGUARD")
    out = env.openai("armor-out")
    assert chat(out, "fine").endswith("fine")
    assert guard.last()["path"].endswith("tmpl:sanitizeModelResponse")
    with pytest.raises(openai.UnprocessableEntityError):
        chat(out, "say JAILBREAK")


def test_azure_content_safety(env: Setup) -> None:
    client = env.openai("azure")
    guard = env.guards["contentsafety"]
    assert chat(client, "kind words").endswith("kind words")
    seen = guard.last()  # the jailbreak check runs after the analysis
    assert seen["path"] == "/contentsafety/text:detectJailbreak?api-version=2024-02-15-preview"
    assert seen["headers"]["ocp-apim-subscription-key"] == GUARD_KEY and "authorization" not in seen["headers"]
    for text in ("HATEFUL words", "a forbidden word", "JAILBREAK attempt"):
        with pytest.raises(openai.UnprocessableEntityError) as err:
            chat(client, text)
        assert_rejected(err.value)
    with pytest.raises(openai.InternalServerError):
        chat(client, "FAILGUARD")
    out = env.openai("azure-out")
    with pytest.raises(openai.UnprocessableEntityError):
        chat(out, "HATEFUL reply")
    assert guard.last()["path"] == "/contentsafety/text:analyze?api-version=2024-09-01"  # no jailbreak check
