"""Where providers are and what paths they get, as agentgateway defines it (its
``LocalLLMModels::apply_base_url``, ``resolve_provider_connection`` and ``set_default_path``):

- ``baseUrl`` gives host, port and TLS (https); a path in it is the path prefix, an empty path
  keeps the provider's default path;
- a path prefix replaces the ``/v1`` base of OpenAI, Anthropic and custom providers and goes in
  front of the default path of Gemini, Vertex, Azure and Bedrock;
- ``hostOverride`` alone: plain TCP (TLS only from ``backendTLS`` or an https ``baseUrl``, never
  from the port), and requests in the provider's own API keep the client's path;
- ``pathPrefix`` wins over the path of ``baseUrl``, ``hostOverride`` over its host;
- Azure's ``resourceType`` picks the host and paths; Gemini chat goes to its OpenAI-compatible
  endpoint unless ``nativeApi`` asks for ``generateContent``; Vertex's ``global`` region is
  ``aiplatform.googleapis.com``.
"""

from __future__ import annotations

import pytest

from agentgateway.config.compile import compile_config
from agentgateway.config.errors import ConfigError
from agentgateway.config.loader import decode_config
from agentgateway.llm.config import LlmService
from agentgateway.llm.providers import (
    F_ANTHROPIC,
    F_GEMINI,
    F_OPENAI,
    OP_CHAT,
    OP_COUNT_TOKENS,
    OP_EMBEDDINGS,
    OP_RERANK,
    OP_RESPONSES,
    OP_STREAM,
    Provider,
)


def service(models: str, extra: str = "") -> LlmService:
    runtime = compile_config(decode_config(f"llm:\n  models:\n{models}\n{extra}"))
    route = runtime.binds[4000].default_listener.routes.select(b"x", b"POST", b"/v1/chat/completions", [], b"")
    assert route is not None
    svc = route.backends.pick()
    assert isinstance(svc, LlmService)
    return svc


def provider(models: str, name: str = "m", extra: str = "") -> Provider:
    route = service(models, extra).route_for(name, direct=False)
    assert route is not None
    return route.tiers[0][0][0].provider


def test_base_url_with_empty_path_keeps_the_default_path() -> None:
    p = provider("  - {name: m, provider: openAI, params: {apiKey: k, baseUrl: 'http://localhost:11434'}}")
    assert (p.target.host, p.target.port, p.target.tls) == ("localhost", 11434, None)
    assert p.path(OP_CHAT, "m") == "/v1/chat/completions"
    assert p.path(OP_RESPONSES, "m") == "/v1/responses"
    a = provider("  - {name: m, provider: anthropic, params: {apiKey: k, baseUrl: 'http://127.0.0.1:9/'}}")
    assert a.path(OP_CHAT, "m", F_ANTHROPIC) == "/v1/messages"
    assert a.path(OP_COUNT_TOKENS, "m") == "/v1/messages/count_tokens"
    g = provider("  - {name: m, provider: gemini, params: {apiKey: k, baseUrl: 'http://127.0.0.1:9'}}")
    assert g.path(OP_CHAT, "gemini-2.5-flash") == "/v1beta/openai/chat/completions"
    az = provider("  - {name: m, provider: azure, params: {apiKey: k, baseUrl: 'http://127.0.0.1:9'}}")
    assert az.path(OP_CHAT, "gpt") == "/openai/v1/chat/completions"
    vx = provider(
        "  - {name: m, provider: vertex, params: {apiKey: t, vertexProject: p, vertexRegion: r1,"
        " baseUrl: 'http://127.0.0.1:9'}}"
    )
    assert vx.path(OP_CHAT, "gemini-2.0-flash") == (
        "/v1/projects/p/locations/r1/publishers/google/models/gemini-2.0-flash:generateContent"
    )


def test_base_url_path_is_the_prefix() -> None:
    # replaces the /v1 base of OpenAI and Anthropic
    p = provider("  - {name: m, provider: openAI, params: {apiKey: k, baseUrl: 'https://proxy.example/api/openai'}}")
    assert (p.target.host, p.target.port, p.target.tls is not None) == ("proxy.example", 443, True)
    assert p.path(OP_CHAT, "m") == "/api/openai/chat/completions"
    assert p.path(OP_EMBEDDINGS, "m") == "/api/openai/embeddings"
    # goes in front of the whole default path of the others
    g = provider("  - {name: m, provider: gemini, params: {apiKey: k, baseUrl: 'http://h:8/google'}}")
    assert g.path(OP_EMBEDDINGS, "x") == "/google/v1beta/openai/embeddings"
    b = provider(
        "  - {name: m, provider: bedrock, params: {apiKey: k, awsRegion: us-east-1, baseUrl: 'http://h:8/aws'}}"
    )
    assert b.path(OP_STREAM, "a.b:0") == "/aws/model/a.b%3A0/converse-stream"


def test_host_override_is_plain_tcp_and_keeps_the_client_path() -> None:
    p = provider("  - {name: m, provider: openAI, params: {apiKey: k, hostOverride: 'gw.internal:443'}}")
    assert (p.target.host, p.target.port, p.target.tls) == ("gw.internal", 443, None)
    assert p.client_path  # same-API requests keep the client's path
    assert p.path(OP_CHAT, "m") == "/v1/chat/completions"  # translated ones: the default path
    tls = provider(
        "  - {name: m, provider: openAI, params: {apiKey: k, hostOverride: 'gw.internal:8443'},"
        " backendTLS: {insecure: true}}"
    )
    assert tls.target.tls is not None
    with_prefix = provider(
        "  - {name: m, provider: openAI, params: {apiKey: k, hostOverride: 'h:1', pathPrefix: /proxy/openai}}"
    )
    assert not with_prefix.client_path and with_prefix.path(OP_CHAT, "m") == "/proxy/openai/chat/completions"


def test_path_prefix_and_host_override_win_over_base_url() -> None:
    p = provider(
        "  - {name: m, provider: groq, params: {apiKey: k, baseUrl: 'https://api.groq.com/openai/v1',"
        " pathPrefix: /gateway/openai}}"
    )
    assert (p.target.host, p.target.port) == ("api.groq.com", 443)
    assert p.path(OP_CHAT, "m") == "/gateway/openai/chat/completions"
    f = provider(
        "  - {name: m, provider: fireworks, params: {apiKey: k, baseUrl: 'https://api.fireworks.ai/inference/v1',"
        " hostOverride: 'proxy.example.com:8443'}}"
    )
    assert (f.target.host, f.target.port, f.target.tls is not None) == ("proxy.example.com", 8443, True)
    assert f.path(OP_CHAT, "m") == "/inference/v1/chat/completions"


def test_azure_resource_types() -> None:
    svc = service(
        "\n".join(
            [
                "  - {name: oa, provider: azure, params: {apiKey: k, azureResourceName: res}}",
                "  - {name: pv, provider: azure, params: {apiKey: k, azureResourceName: res, azureApiVersion: preview}}",
                "  - {name: dt, provider: azure, params: {apiKey: k, azureResourceName: res,"
                " azureApiVersion: '2024-10-21'}}",
                "  - {name: fd, provider: azure, params: {apiKey: k, azureResourceName: res,"
                " azureResourceType: foundry, azureProjectName: proj}}",
                "  - {name: ai, provider: azure, params: {apiKey: k, azureResourceName: res,"
                " azureResourceType: aiServices}}",
            ]
        )
    )

    def p(name: str) -> Provider:
        route = svc.route_for(name)
        assert route is not None
        return route.tiers[0][0][0].provider

    assert p("oa").target.host == "res.openai.azure.com"
    assert p("oa").path(OP_CHAT, "gpt") == "/openai/v1/chat/completions"
    assert p("pv").path(OP_RESPONSES, "gpt") == "/openai/v1/responses?api-version=preview"
    assert p("dt").path(OP_CHAT, "dep") == "/openai/deployments/dep/chat/completions?api-version=2024-10-21"
    assert not p("dt").serves_responses("dep")
    fd = p("fd")
    assert fd.target.host == "res.services.ai.azure.com" and fd.auth_headers == ((b"api-key", b"k"),)
    assert fd.chat_format(False, "gpt-4o") == F_OPENAI
    assert fd.path(OP_CHAT, "gpt-4o", F_OPENAI) == "/api/projects/proj/openai/v1/chat/completions"
    assert fd.path(OP_EMBEDDINGS, "te") == "/api/projects/proj/openai/v1/embeddings"
    assert fd.chat_format(False, "claude-haiku-4-5") == F_ANTHROPIC  # Foundry's Claude: Messages only
    assert fd.path(OP_CHAT, "claude-haiku-4-5", F_ANTHROPIC) == "/anthropic/v1/messages"
    assert fd.counts_tokens("claude-haiku-4-5") and not fd.counts_tokens("gpt-4o")
    assert p("ai").target.host == "res.services.ai.azure.com"  # aiServices is foundry's alias
    assert p("ai").path(OP_CHAT, "gpt", F_OPENAI) == "/api/projects/res/openai/v1/chat/completions"


def test_gemini_openai_compatible_unless_native() -> None:
    compat = provider("  - {name: m, provider: gemini, params: {apiKey: k}}")
    assert compat.target.host == "generativelanguage.googleapis.com" and compat.format == F_OPENAI
    assert compat.path(OP_CHAT, "gemini-2.5-flash") == "/v1beta/openai/chat/completions"
    assert compat.auth_headers == ((b"authorization", b"Bearer k"),)
    native = provider("  - {name: m, provider: gemini, params: {apiKey: k, nativeApi: true}}")
    assert native.format == F_GEMINI and native.auth_headers == ((b"x-goog-api-key", b"k"),)
    assert native.path(OP_STREAM, "gemini-2.5-flash") == (
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse"
    )


def test_vertex_hosts() -> None:
    def host(region: str) -> str:
        return provider(
            f"  - {{name: m, provider: vertex, params: {{apiKey: t, vertexProject: p{region}}}}}"
        ).target.host

    assert host("") == "aiplatform.googleapis.com"
    assert host(", vertexRegion: global") == "aiplatform.googleapis.com"
    assert host(", vertexRegion: us") == "aiplatform.us.rep.googleapis.com"
    assert host(", vertexRegion: europe-west4") == "europe-west4-aiplatform.googleapis.com"


@pytest.mark.parametrize(
    ("preset", "host", "chat", "extra"),
    [
        ("cohere", "api.cohere.ai", "/compatibility/v1/chat/completions", [(OP_RERANK, "/v2/rerank")]),
        ("ollama", "localhost", "/v1/chat/completions", [(OP_RESPONSES, "/v1/responses")]),
        ("baseten", "inference.baseten.co", "/v1/chat/completions", []),
        ("cerebras", "api.cerebras.ai", "/v1/chat/completions", []),
        ("deepinfra", "api.deepinfra.com", "/v1/openai/chat/completions", [(OP_EMBEDDINGS, "/v1/openai/embeddings")]),
        ("deepseek", "api.deepseek.com", "/v1/chat/completions", []),
        ("groq", "api.groq.com", "/openai/v1/chat/completions", [(OP_RESPONSES, "/openai/v1/responses")]),
        ("huggingface", "router.huggingface.co", "/v1/chat/completions", []),
        ("mistral", "api.mistral.ai", "/v1/chat/completions", [(OP_EMBEDDINGS, "/v1/embeddings")]),
        ("openrouter", "openrouter.ai", "/api/v1/chat/completions", [(OP_RERANK, "/api/v1/rerank")]),
        ("togetherai", "api.together.xyz", "/v1/chat/completions", [(OP_RERANK, "/v1/rerank")]),
        ("xai", "api.x.ai", "/v1/chat/completions", [(OP_RESPONSES, "/v1/responses")]),
        ("fireworks", "api.fireworks.ai", "/inference/v1/chat/completions", [(OP_RERANK, "/inference/v1/rerank")]),
    ],
)
def test_presets(preset: str, host: str, chat: str, extra: list[tuple[str, str]]) -> None:
    p = provider(f"  - {{name: m, provider: {preset}, params: {{apiKey: k}}}}")
    assert p.kind == "custom" and p.target.host == host and p.genai_name == preset
    assert (p.target.tls is None) == (preset == "ollama")
    assert p.auth_headers == ((b"authorization", b"Bearer k"),)
    assert p.path(OP_CHAT, "x", F_OPENAI) == chat
    for op, path in extra:
        assert p.path(op, "x") == path


def test_preset_messages_paths() -> None:
    for preset, path in (
        ("deepseek", "/anthropic/v1/messages"),
        ("deepinfra", "/anthropic/v1/messages"),
        ("baseten", "/v1/messages"),
        ("openrouter", "/api/v1/messages"),
        ("fireworks", "/inference/v1/messages"),
    ):
        p = provider(f"  - {{name: m, provider: {preset}, params: {{apiKey: k}}}}")
        assert p.chat_format(True, "x") == F_ANTHROPIC  # a Messages client keeps its API
        assert p.chat_format(False, "x") == F_OPENAI
        assert p.path(OP_CHAT, "x", F_ANTHROPIC) == path
    cerebras = provider("  - {name: m, provider: cerebras, params: {apiKey: k}}")
    assert cerebras.chat_format(True, "x") == F_OPENAI  # Messages translated to Chat Completions
    assert not cerebras.serves_rerank() and cerebras.embeddings_format() is None


def test_preset_reached_through_host_override_keeps_its_paths() -> None:
    p = provider("  - {name: m, provider: groq, params: {apiKey: k, hostOverride: '127.0.0.1:9000'}}")
    assert (p.target.host, p.target.port, p.target.tls) == ("127.0.0.1", 9000, None)
    assert p.path(OP_CHAT, "x", F_OPENAI) == "/openai/v1/chat/completions"


def test_custom_provider_formats() -> None:
    p = provider(
        "  - name: m\n    provider: {custom: {formats: [{type: completions}, {type: messages, path: /api/messages}],"
        " providerOverride: acme}}\n    params: {model: upstream-custom, baseUrl: 'http://custom.example.com:8080'}"
    )
    assert (p.target.host, p.target.port, p.genai_name, p.model) == (
        "custom.example.com",
        8080,
        "acme",
        "upstream-custom",
    )
    assert p.path(OP_CHAT, "x", F_OPENAI) == "/v1/chat/completions"
    assert p.path(OP_CHAT, "x", F_ANTHROPIC) == "/api/messages"
    assert not p.serves_responses("x") and p.embeddings_format() is None


def test_provider_reference() -> None:
    svc = service(
        "  - {name: m, provider: {reference: shared}, params: {model: claude-x}}",
        "  providers:\n  - name: shared\n    provider: anthropic\n"
        "    params: {apiKey: k, baseUrl: 'https://anthropic.internal/v1', model: ignored}\n"
        "    defaults: {overrides: {temperature: 0.2}}",
    )
    route = svc.route_for("m")
    assert route is not None
    target = route.tiers[0][0][0]
    p = target.provider
    assert (p.kind, p.target.host, p.model, p.auth_headers) == (
        "anthropic",
        "anthropic.internal",
        "claude-x",
        ((b"x-api-key", b"k"),),
    )
    assert p.path(OP_CHAT, "x", F_ANTHROPIC) == "/v1/messages"
    assert target.options is not None and target.options.shaping is not None
    assert target.options.shaping.overrides == {"temperature": 0.2}


@pytest.mark.parametrize(
    ("models", "path"),
    [
        ("  - {name: m, provider: copilot}", "llm.models[0].provider"),
        ("  - {name: m, provider: nosuch}", "llm.models[0].provider"),
        ("  - {name: m, provider: {reference: missing}}", "llm.models[0].provider.reference"),
        ("  - {name: m, provider: {reference: a, custom: {formats: [{type: completions}]}}}", "llm.models[0].provider"),
        ("  - {name: m, provider: {custom: {formats: [{type: completions}]}}}", "llm.models[0].params"),
        (
            "  - {name: m, provider: {custom: {formats: [{type: realtime}]}}, params: {baseUrl: 'http://h:1'}}",
            "llm.models[0].provider.custom.formats[0].type",
        ),
        ("  - {name: m, provider: azure, params: {apiKey: k}}", "llm.models[0].params"),
        ("  - {name: m, provider: openAI, params: {nativeApi: true}}", "llm.models[0].params.nativeApi"),
        ("  - {name: m, provider: openAI, params: {baseUrl: 'http://u:p@h:1'}}", "llm.models[0].params.baseUrl"),
        ("  - {name: m, provider: openAI, params: {baseUrl: 'http://h:1/?q=1'}}", "llm.models[0].params.baseUrl"),
        ("  - {name: m, provider: openAI, auth: {passthrough: {}}}", "llm.models[0].params.auth.passthrough"),
        ("  - {name: m, provider: openAI, backendTLS: {}, tls: {}}", "llm.models[0].tls"),
    ],
)
def test_errors_name_the_path(models: str, path: str) -> None:
    with pytest.raises(ConfigError) as err:
        service(models)
    assert str(err.value).startswith(path), str(err.value)


def test_backend_auth_kinds_of_any_backend_reach_a_provider() -> None:
    """``auth.azure`` (Entra tokens for Azure OpenAI) is the backend auth of any backend, not
    ignored; the token-exchange kinds need a client's request and are refused by name."""
    from agentgateway.upstream.backend_auth import AzureAuth

    azure = provider(
        "  - {name: m, provider: azure, params: {azureResourceName: r, azureResourceType: openAI},"
        " auth: {azure: {explicitConfig: {clientSecret: {tenant_id: t, client_id: c, client_secret: s}}}}}"
    )
    assert isinstance(azure.target.auth, AzureAuth)
    with pytest.raises(ConfigError) as err:
        service(
            "  - {name: m, provider: openAI,"
            " auth: {oauthTokenExchange: {host: '127.0.0.1:1', clientAuth: {clientId: c, clientSecret: s}}}}"
        )
    assert "oauthTokenExchange" in str(err.value)
