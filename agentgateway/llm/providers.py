"""Providers as the data plane sees them: where requests go, how they are authenticated, and
which wire format they speak. Everything here is computed at config load; per request only the
path (model names go in some URLs) and the auth headers are assembled.

Paths follow agentgateway: a provider has a default path per API; a path prefix (``pathPrefix``,
or the path of ``baseUrl``) replaces the ``/v1`` base of OpenAI, Anthropic and custom providers
and goes in front of the whole default path of the others (Gemini, Vertex, Azure, Bedrock).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from agentgateway.llm.bedrock import sign_sigv4
from agentgateway.llm.errors import LlmError
from agentgateway.upstream.target import HttpTarget

if TYPE_CHECKING:
    from botocore.credentials import Credentials

# A Gemini or Vertex model as a path: ``gemini-2.0-flash``, ``publishers/google/models/…``,
# ``claude-3-5@20240620``; each segment starts with a letter or digit (so none is ``.`` or ``..``).
_GOOGLE_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+\-]*(?:/[A-Za-z0-9][A-Za-z0-9._@+\-]*)*").fullmatch

# Wire formats a provider speaks.
F_OPENAI, F_ANTHROPIC, F_GEMINI, F_BEDROCK = "openai", "anthropic", "gemini", "bedrock"

# Provider kind (config name) → (wire format, gen_ai.provider.name). A custom provider's format
# depends on the client API (its ``formats``); Gemini's on ``nativeApi``.
KINDS: dict[str, tuple[str, str]] = {
    "openAI": (F_OPENAI, "openai"),
    "azure": (F_OPENAI, "azure.ai.openai"),
    "anthropic": (F_ANTHROPIC, "anthropic"),
    "gemini": (F_OPENAI, "gcp.gemini"),
    "vertex": (F_GEMINI, "gcp.vertex_ai"),
    "bedrock": (F_BEDROCK, "aws.bedrock"),
    "custom": (F_OPENAI, "custom"),
}

# Operations (what a request asks the provider to do).
OP_CHAT, OP_STREAM, OP_RESPONSES, OP_EMBEDDINGS, OP_COUNT_TOKENS, OP_RERANK = (
    "chat",
    "stream",
    "responses",
    "embeddings",
    "count",
    "rerank",
)

# The APIs a custom provider may list (agentgateway's ProviderFormat names) that this gateway serves.
FMT_COMPLETIONS, FMT_MESSAGES, FMT_RESPONSES, FMT_EMBEDDINGS, FMT_COUNT, FMT_RERANK = (
    "completions",
    "messages",
    "responses",
    "embeddings",
    "anthropicTokenCount",
    "rerank",
)
CUSTOM_FORMATS = frozenset((FMT_COMPLETIONS, FMT_MESSAGES, FMT_RESPONSES, FMT_EMBEDDINGS, FMT_COUNT, FMT_RERANK))

# The default path below the /v1 base (or a path prefix) of each custom-provider API.
_OPENAI_SUFFIX = {
    FMT_COMPLETIONS: "/chat/completions",
    FMT_RESPONSES: "/responses",
    FMT_EMBEDDINGS: "/embeddings",
    FMT_RERANK: "/rerank",
    FMT_MESSAGES: "/messages",
    FMT_COUNT: "/messages/count_tokens",
}
DEFAULT_BASE = "/v1"
GEMINI_OPENAI_CHAT = "/v1beta/openai/chat/completions"
GEMINI_OPENAI_EMBEDDINGS = "/v1beta/openai/embeddings"

ANTHROPIC_VERSION = b"2023-06-01"
_JSON = (b"content-type", b"application/json")
# The gateway reads every answer (usage, guards, translation): it asks for no content coding.
# Naming none would let a server pick any (RFC 9110 §12.5.3), which the gateway cannot read.
_IDENTITY = (b"accept-encoding", b"identity")


def _segment(model: str) -> str:
    """A model as one path segment (Bedrock's model id, an Azure deployment): escaped, and never
    a dot segment, which would take the gateway's credential to the path above it."""
    if model in ("", ".", ".."):
        raise LlmError(400, f"invalid model name {model!r}")
    return quote(model, safe="")


class AwsSigning:
    __slots__ = ("credentials", "region")

    def __init__(self, credentials: Credentials, region: str) -> None:
        self.credentials = credentials
        self.region = region


class AzureEndpoint:
    """Azure's resource type (``openAI`` or ``foundry``), API version and Foundry project."""

    __slots__ = ("foundry", "version", "project")

    def __init__(self, foundry: bool, version: str, project: str) -> None:
        self.foundry = foundry
        self.version = version
        self.project = project


class Provider:
    """One provider endpoint: a target (host, port, TLS), a path prefix, and static auth headers
    (or SigV4). ``model`` is the upstream model name when the config fixes it."""

    __slots__ = (
        "name",
        "kind",
        "format",
        "genai_name",
        "target",
        "prefix",
        "client_path",
        "path_override",
        "model",
        "auth_headers",
        "aws",
        "azure",
        "vertex_project",
        "vertex_location",
        "gemini_native",
        "formats",
        "tokenize",
        "scheme",
        "secrets",
        "guardrail",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        target: HttpTarget,
        prefix: str | None,
        model: str | None,
        auth_headers: tuple[tuple[bytes, bytes], ...],
        aws: AwsSigning | None = None,
        path_override: str | None = None,
        azure: AzureEndpoint | None = None,
        vertex: tuple[str, str] = ("", ""),
        tokenize: bool = False,
        client_path: bool = False,
        gemini_native: bool = False,
        formats: dict[str, str | None] | None = None,
        genai_name: str | None = None,
    ) -> None:
        self.name = name
        self.kind = kind
        self.format, default_genai = KINDS[kind]
        self.genai_name = genai_name or default_genai
        if kind == "gemini" and gemini_native:
            self.format = F_GEMINI
        self.target = target
        # None: the provider's default path; a prefix replaces /v1 (OpenAI, Anthropic, custom)
        # or goes in front of the default path (the others)
        self.prefix = prefix.rstrip("/") if prefix is not None else None
        # hostOverride without a path prefix: requests in the provider's own API keep the
        # client's path (agentgateway forwards it); translated ones take the default path
        self.client_path = client_path
        self.path_override = path_override
        self.model = model
        self.auth_headers = auth_headers
        self.aws = aws
        self.azure = azure
        self.vertex_project, self.vertex_location = vertex
        self.gemini_native = gemini_native
        # custom providers: the APIs served, each with its own path (None: the default one)
        self.formats: dict[str, str | None] = formats or {}
        self.tokenize = tokenize
        self.scheme = "https" if target.tls else "http"
        # The credentials the gateway sends this provider, redacted from what it answers.
        secrets = [v.decode("latin-1").removeprefix("Bearer ") for _, v in auth_headers]
        if aws is not None:
            creds = aws.credentials
            secrets += [c for c in (creds.access_key, creds.secret_key, creds.token) if c]
        self.secrets = tuple(secrets)
        # Bedrock's guardrailConfig of every Converse call (the provider's guardrailIdentifier
        # and guardrailVersion), or None
        self.guardrail: dict[str, str] | None = None

    # ------------------------------------------------------------------ what it speaks

    def _claude(self, model: str) -> bool:
        return model.lower().startswith("claude")

    def chat_format(self, api_messages: bool, model: str) -> str | None:
        """The wire format chat requests are sent in (None: the provider serves no chat API).
        Custom providers prefer the client's own API (Messages for a Messages client), then
        Chat Completions, then Messages, as agentgateway's translation table does."""
        if self.kind == "custom":
            formats = self.formats
            if api_messages and FMT_MESSAGES in formats:
                return F_ANTHROPIC
            if FMT_COMPLETIONS in formats:
                return F_OPENAI
            if FMT_MESSAGES in formats:
                return F_ANTHROPIC
            return None
        azure = self.azure
        if azure is not None and azure.foundry and self._claude(model):
            return F_ANTHROPIC  # Foundry's Claude models take Anthropic's Messages API only
        return self.format

    def serves_responses(self, model: str) -> bool:
        """The provider has OpenAI's Responses API (requests pass through)."""
        if self.kind == "openAI":
            return True
        if self.kind == "custom":
            return FMT_RESPONSES in self.formats
        azure = self.azure
        if azure is not None:
            return (azure.foundry and not self._claude(model)) or azure.version in ("v1", "preview")
        return False

    def embeddings_format(self) -> str | None:
        """OpenAI's embeddings API (F_OPENAI), a native one (F_GEMINI, F_BEDROCK), or none."""
        if self.kind == "custom":
            return F_OPENAI if FMT_EMBEDDINGS in self.formats else None
        if self.kind == "anthropic":
            return None
        return self.format

    def counts_tokens(self, model: str) -> bool:
        """The provider has Anthropic's count_tokens API."""
        if self.kind == "custom":
            return FMT_COUNT in self.formats
        return self.chat_format(True, model) == F_ANTHROPIC and self.kind in ("anthropic", "azure")

    def serves_rerank(self) -> bool:
        return self.kind == "custom" and FMT_RERANK in self.formats

    # ------------------------------------------------------------------ where

    def path(self, op: str, model: str, fmt: str | None = None) -> str:
        """The path of one operation (``fmt``: the wire format of a chat operation)."""
        if self.path_override:
            return self.path_override
        kind = self.kind
        prefix = self.prefix
        if kind == "custom":
            if op == OP_RESPONSES:
                name = FMT_RESPONSES
            elif op == OP_EMBEDDINGS:
                name = FMT_EMBEDDINGS
            elif op == OP_COUNT_TOKENS:
                name = FMT_COUNT
            elif op == OP_RERANK:
                name = FMT_RERANK
            else:
                name = FMT_MESSAGES if fmt == F_ANTHROPIC else FMT_COMPLETIONS
            explicit = self.formats.get(name)
            if explicit:
                return explicit
            return (DEFAULT_BASE if prefix is None else prefix) + _OPENAI_SUFFIX[name]
        if kind == "openAI":
            suffix = {OP_RESPONSES: "/responses", OP_EMBEDDINGS: "/embeddings"}.get(op, "/chat/completions")
            return (DEFAULT_BASE if prefix is None else prefix) + suffix
        if kind == "anthropic":
            suffix = "/messages/count_tokens" if op == OP_COUNT_TOKENS else "/messages"
            return (DEFAULT_BASE if prefix is None else prefix) + suffix
        if kind == "azure":
            path = self._azure_path(op, model, fmt)
        elif kind == "gemini" and not self.gemini_native:
            path = GEMINI_OPENAI_EMBEDDINGS if op == OP_EMBEDDINGS else GEMINI_OPENAI_CHAT
        elif kind in ("gemini", "vertex"):
            path = self._gemini_path(op, model)
        else:  # Bedrock: the model id (or ARN) is one path segment
            action = {OP_STREAM: "converse-stream", OP_EMBEDDINGS: "invoke"}.get(op, "converse")
            path = f"/model/{_segment(model)}/{action}"
        return (prefix or "") + path

    def _azure_path(self, op: str, model: str, fmt: str | None) -> str:
        azure = self.azure
        assert azure is not None
        if fmt == F_ANTHROPIC or op == OP_COUNT_TOKENS:
            return "/anthropic/v1/messages/count_tokens" if op == OP_COUNT_TOKENS else "/anthropic/v1/messages"
        endpoint = {OP_RESPONSES: "responses", OP_EMBEDDINGS: "embeddings"}.get(op, "chat/completions")
        if azure.foundry:
            return f"/api/projects/{quote(azure.project, safe='')}/openai/v1/{endpoint}"
        if azure.version == "v1":
            return f"/openai/v1/{endpoint}"
        if azure.version == "preview":
            return f"/openai/v1/{endpoint}?api-version=preview"
        deployment = _segment(self.model or model)
        return f"/openai/deployments/{deployment}/{endpoint}?api-version={quote(azure.version, safe='')}"

    def _gemini_path(self, op: str, model: str) -> str:
        # The model (the client's, when the provider names none) is a resource name in the path:
        # segments of a name only, so that no '..', '?', '#' or escape takes the gateway's
        # credential outside the project's models or into the query.
        if _GOOGLE_MODEL(model) is None:
            raise LlmError(400, f"invalid model name {model[:100]!r}")
        vertex = self.kind == "vertex"
        if vertex:
            if "/" not in model:
                model = f"publishers/google/models/{model}"
            base = f"/v1/projects/{self.vertex_project}/locations/{self.vertex_location}"
        else:
            if "/" not in model:
                model = f"models/{model}"
            base = "/v1beta"
        if op == OP_EMBEDDINGS:
            return f"{base}/{model}:predict" if vertex else f"{base}/{model}:batchEmbedContents"
        if op == OP_COUNT_TOKENS:
            return f"{base}/{model}:countTokens"
        if op == OP_STREAM:
            return f"{base}/{model}:streamGenerateContent?alt=sse"
        return f"{base}/{model}:generateContent"

    def headers(
        self, path: str, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = (), fmt: str | None = None
    ) -> list[tuple[bytes, bytes]]:
        """Request headers for the provider: content type, auth (SigV4 over ``body``), extras."""
        headers = [_JSON, _IDENTITY, *self.auth_headers, *extra]
        if (fmt or self.format) == F_ANTHROPIC and not any(k == b"anthropic-version" for k, _ in extra):
            headers.append((b"anthropic-version", ANTHROPIC_VERSION))
        aws = self.aws
        if aws is not None:
            url = f"{self.scheme}://{self.target.host_header.decode()}{path}"
            headers += sign_sigv4(aws.credentials, aws.region, url, [("content-type", "application/json")], body)
        return headers


# ---------------------------------------------------------------- presets

# agentgateway's provider presets: custom providers with a base URL (host, TLS, path prefix),
# a provider name for telemetry, and the APIs each serves (a path of its own where it has one).
PRESETS: dict[str, tuple[str, str, tuple[tuple[str, str | None], ...]]] = {
    "cohere": (
        "https://api.cohere.ai",
        "cohere",
        (
            (FMT_COMPLETIONS, "/compatibility/v1/chat/completions"),
            (FMT_EMBEDDINGS, "/compatibility/v1/embeddings"),
            (FMT_RERANK, "/v2/rerank"),
        ),
    ),
    "ollama": (
        "http://localhost:11434/v1",
        "ollama",
        ((FMT_COMPLETIONS, None), (FMT_RESPONSES, None), (FMT_EMBEDDINGS, None)),
    ),
    "baseten": ("https://inference.baseten.co/v1", "baseten", ((FMT_COMPLETIONS, None), (FMT_MESSAGES, None))),
    "cerebras": ("https://api.cerebras.ai/v1", "cerebras", ((FMT_COMPLETIONS, None),)),
    "deepinfra": (
        "https://api.deepinfra.com/v1/openai",
        "deepinfra",
        ((FMT_COMPLETIONS, None), (FMT_MESSAGES, "/anthropic/v1/messages"), (FMT_EMBEDDINGS, None)),
    ),
    "deepseek": (
        "https://api.deepseek.com/v1",
        "deepseek",
        ((FMT_COMPLETIONS, None), (FMT_MESSAGES, "/anthropic/v1/messages")),
    ),
    "groq": ("https://api.groq.com/openai/v1", "groq", ((FMT_COMPLETIONS, None), (FMT_RESPONSES, None))),
    "huggingface": (
        "https://router.huggingface.co/v1",
        "huggingface",
        ((FMT_COMPLETIONS, None), (FMT_RESPONSES, None)),
    ),
    "mistral": ("https://api.mistral.ai/v1", "mistral", ((FMT_COMPLETIONS, None), (FMT_EMBEDDINGS, None))),
    "openrouter": (
        "https://openrouter.ai/api/v1",
        "openrouter",
        (
            (FMT_COMPLETIONS, None),
            (FMT_MESSAGES, None),
            (FMT_RESPONSES, None),
            (FMT_EMBEDDINGS, None),
            (FMT_RERANK, None),
        ),
    ),
    "togetherai": (
        "https://api.together.xyz/v1",
        "togetherai",
        ((FMT_COMPLETIONS, None), (FMT_EMBEDDINGS, None), (FMT_RERANK, None)),
    ),
    # xAI's realtime API (a websocket) is not served here; its other APIs are
    "xai": ("https://api.x.ai/v1", "xai", ((FMT_COMPLETIONS, None), (FMT_RESPONSES, None))),
    "fireworks": (
        "https://api.fireworks.ai/inference/v1",
        "fireworks",
        (
            (FMT_COMPLETIONS, None),
            (FMT_MESSAGES, None),
            (FMT_RESPONSES, None),
            (FMT_EMBEDDINGS, None),
            (FMT_RERANK, None),
        ),
    ),
}
