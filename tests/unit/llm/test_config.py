"""``llm:``, ``ai`` backends and ``policies.ai`` compile, or fail with the path of the problem."""

from __future__ import annotations

import pytest

from agentgateway.config.compile import compile_config
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import decode_config
from agentgateway.llm.config import LlmService
from agentgateway.llm.providers import OP_CHAT, OP_EMBEDDINGS, OP_STREAM


def compile_text(text: str):  # type: ignore[no-untyped-def]
    return compile_config(decode_config(text))


def service(text: str) -> LlmService:
    runtime = compile_text(text)
    bind = runtime.binds[4000]
    route = bind.default_listener.routes.select(b"x", b"POST", b"/v1/chat/completions", [], b"")
    assert route is not None
    svc = route.backends.pick()
    assert isinstance(svc, LlmService)
    return svc


def test_models_wildcards_and_virtual_models() -> None:
    svc = service(
        """
llm:
  models:
  - {name: gpt-4o-mini, provider: openAI, params: {apiKey: k}}
  - {name: "anthropic/*", provider: anthropic, params: {apiKey: k}}
  - {name: claude, provider: anthropic, params: {apiKey: k, model: claude-haiku-4-5}}
  virtualModels:
  - name: resilient
    routing: {failover: {timeout: 2s, targets: [{model: gpt-4o-mini}, {model: anthropic/claude-x, priority: 1}]}}
"""
    )
    route = svc.route_for("anthropic/claude-sonnet")
    assert route is not None and route.tiers[0][0][0].model is None  # the requested name is sent
    claude = svc.route_for("claude")
    assert claude is not None and claude.tiers[0][0][0].model == "claude-haiku-4-5"
    resilient = svc.route_for("resilient")
    assert resilient is not None and resilient.timeout == 2.0
    assert [t.model for t in resilient.attempts()] == ["gpt-4o-mini", "anthropic/claude-x"]
    assert svc.route_for("unknown") is None
    assert [r.name for r in svc.listed] == ["gpt-4o-mini", "claude", "resilient"]
    openai = svc.route_for("gpt-4o-mini").tiers[0][0][0].provider  # type: ignore[union-attr]
    assert openai.target.host == "api.openai.com" and openai.target.tls is not None
    assert openai.path(OP_CHAT, "gpt-4o-mini") == "/v1/chat/completions"
    assert openai.auth_headers == ((b"authorization", b"Bearer k"),)


def test_provider_endpoints() -> None:
    svc = service(
        """
llm:
  models:
  - {name: az, provider: azure, params: {apiKey: k, azureResourceName: res, azureApiVersion: "2024-10-21"}}
  - {name: az1, provider: azure, params: {apiKey: k, azureResourceName: res}}
  - {name: vx, provider: vertex, params: {apiKey: tok, vertexProject: p1, vertexRegion: europe-west4}}
  - {name: gm, provider: gemini, params: {apiKey: k}}
  - {name: br, provider: bedrock, params: {apiKey: br-key, awsRegion: eu-west-1, model: "anthropic.claude-3-haiku-20240307-v1:0"}}
"""
    )

    def provider(name: str):  # type: ignore[no-untyped-def]
        return svc.route_for(name).tiers[0][0][0].provider  # type: ignore[union-attr]

    az = provider("az")
    assert az.target.host == "res.openai.azure.com"
    assert az.path(OP_CHAT, "dep") == "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    assert az.auth_headers == ((b"api-key", b"k"),)
    assert provider("az1").path(OP_EMBEDDINGS, "m") == "/openai/v1/embeddings"
    vx = provider("vx")
    assert vx.target.host == "europe-west4-aiplatform.googleapis.com"
    assert vx.path(OP_STREAM, "gemini-2.0-flash") == (
        "/v1/projects/p1/locations/europe-west4/publishers/google/models/gemini-2.0-flash:streamGenerateContent?alt=sse"
    )
    # Gemini: its OpenAI-compatible endpoint (agentgateway's), a bearer key
    assert provider("gm").path(OP_CHAT, "gemini-2.5-flash") == "/v1beta/openai/chat/completions"
    assert provider("gm").auth_headers == ((b"authorization", b"Bearer k"),)
    br = provider("br")
    assert br.target.host == "bedrock-runtime.eu-west-1.amazonaws.com"
    assert br.path(OP_STREAM, br.model) == "/model/anthropic.claude-3-haiku-20240307-v1%3A0/converse-stream"
    assert br.aws is None and br.auth_headers == ((b"authorization", b"Bearer br-key"),)  # a Bedrock API key


def test_bedrock_sigv4_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKID")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    svc = service("llm: {models: [{name: br, provider: bedrock, params: {awsRegion: us-east-1}}]}")
    br = svc.route_for("br").tiers[0][0][0].provider  # type: ignore[union-attr]
    assert br.aws is not None and br.aws.region == "us-east-1"
    headers = dict(br.headers("/model/m/converse", b"{}"))
    assert headers[b"authorization"].startswith(b"AWS4-HMAC-SHA256 Credential=AKID/")
    assert b"x-amz-date" in headers


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("llm: {models: [{name: a, provider: openAI, matches: []}]}", "llm.models[0].matches"),
        (
            "llm: {models: [{name: a, provider: openAI, transformation: {model: '(('}}]}",
            "llm.models[0].transformation.model",
        ),
        ("llm: {models: [{name: a, provider: openAI}], policies: {oidc: {}}}", "llm.policies.oidc"),
        ("llm: {models: [{name: a, provider: openAI}], policies: {retry: {attempts: 2}}}", "llm.policies.retry"),
        ("llm: {models: [{name: a, provider: openAI}], policies: {backendAuth: {key: k}}}", "llm.policies.backendAuth"),
        (
            "llm: {models: [{name: a, provider: openAI}], policies: {apiKey: {keys: [{key: k, allowedModels: ['']}]}}}",
            "llm.policies.apiKey.keys[0].allowedModels[0]",
        ),
        ("llm: {models: [{name: a, provider: openAI}], policies: {apiKey: {}}}", "llm.policies.apiKey"),
        ("llm: {models: [{name: a, provider: vertex}]}", "llm.models[0]"),
        ("llm: {models: [{name: a, provider: bedrock, params: {apiKey: k}}]}", "llm.models[0].params"),
        ("llm: {models: [{name: a, provider: openAI}, {name: a, provider: openAI}]}", "llm.models[1].name"),
        (
            "llm: {models: [{name: a, provider: openAI}], virtualModels: [{name: v, routing: {failover: {targets: [{model: b}]}}}]}",
            "llm.virtualModels[0].routing.failover.targets[0].model",
        ),
        (
            "llm: {models: [{name: a, provider: openAI}], policies: {ai: {promptGuard: {request: [{regex: {rules: [{pattern: '('}]}}]}}}}",
            "llm.policies.ai.promptGuard.request[0].regex.rules[0].pattern",
        ),
        (
            "llm: {models: [{name: a, provider: openAI}], policies: {ai: {overrides: {model: x}}}}",
            "llm.policies.ai.overrides",
        ),
        (
            "binds: [{port: 3000, listeners: [{routes: [{backends: [{ai: {provider: {openAI: {}, anthropic: {}}}}]}]}]}]",
            "binds[0].listeners[0].routes[0].backends[0].ai.provider",
        ),
        (
            "binds: [{port: 3000, listeners: [{routes: [{backends: [{host: 'a:1', policies: {ai: {}}}]}]}]}]",
            "binds[0].listeners[0].routes[0].backends[0].policies.ai",
        ),
        (
            "llm: {models: [{name: a, provider: openAI}], policies: {ai: {promptGuard: {request: [{webhook: "
            "{target: {host: 'a:1'}, headers: {':authority': '\"x\"'}}}]}}}}",
            "llm.policies.ai.promptGuard.request[0].webhook.headers.:authority: not supported",
        ),
        (
            "llm: {models: [{name: a, provider: openAI}], policies: {ai: {promptGuard: {request: [{webhook: "
            "{target: {host: 'a:1'}, headers: {'bad header': '\"x\"'}}}]}}}}",
            "llm.policies.ai.promptGuard.request[0].webhook.headers.bad header",
        ),
        (
            "llm: {models: [{name: a, provider: openAI}], policies: {ai: {promptGuard: {request: [{webhook: "
            "{target: {host: 'a:1'}, forwardHeaderMatches: [{name: x, value: {regex: '('}}]}}]}}}}",
            "llm.policies.ai.promptGuard.request[0].webhook.forwardHeaderMatches[0].value.regex",
        ),
    ],
)
def test_errors_name_the_path(text: str, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        compile_text(text)
    assert str(err.value).startswith(path), str(err.value)


def test_rejection_body_as_bytes() -> None:
    """agentgateway's Bytes form of ``rejection.body`` (a list of byte values) is the message."""
    svc = service(
        "llm: {models: [{name: a, provider: openAI}], policies: {ai: {promptGuard: {request: "
        "[{regex: {action: reject, rules: [{pattern: x}]}, rejection: {status: 451, body: [110, 111]}}]}}}}"
    )
    rejection = svc.policy.request_guards.guards[0].rejection
    assert (rejection.status, rejection.message) == (451, "no")
