"""Providers as the data plane sees them: where requests go, how they are authenticated, and
which wire format they speak. Everything here is computed at config load; per request only the
path (model names go in some URLs) and the auth headers are assembled."""

from __future__ import annotations

from urllib.parse import quote

from botocore.credentials import Credentials

from agentgateway.llm.bedrock import sign_sigv4
from agentgateway.upstream.target import HttpTarget

# Wire formats a provider speaks.
F_OPENAI, F_ANTHROPIC, F_GEMINI, F_BEDROCK = "openai", "anthropic", "gemini", "bedrock"

# Provider kind (config name) → (wire format, gen_ai.provider.name).
KINDS: dict[str, tuple[str, str]] = {
    "openAI": (F_OPENAI, "openai"),
    "azure": (F_OPENAI, "azure.ai.openai"),
    "anthropic": (F_ANTHROPIC, "anthropic"),
    "gemini": (F_GEMINI, "gcp.gemini"),
    "vertex": (F_GEMINI, "gcp.vertex_ai"),
    "bedrock": (F_BEDROCK, "aws.bedrock"),
}

# Operations (what a request asks the provider to do).
OP_CHAT, OP_STREAM, OP_RESPONSES, OP_EMBEDDINGS, OP_COUNT_TOKENS = "chat", "stream", "responses", "embeddings", "count"

ANTHROPIC_VERSION = b"2023-06-01"
_JSON = (b"content-type", b"application/json")


class AwsSigning:
    __slots__ = ("credentials", "region")

    def __init__(self, credentials: Credentials, region: str) -> None:
        self.credentials = credentials
        self.region = region


class Provider:
    """One provider endpoint: a target (host, port, TLS), a base path, and static auth headers
    (or SigV4). ``model`` is the upstream model name when the config fixes it."""

    __slots__ = (
        "name",
        "kind",
        "format",
        "genai_name",
        "target",
        "base_path",
        "path_override",
        "model",
        "auth_headers",
        "aws",
        "azure_deployment_version",
        "vertex_location",
        "tokenize",
        "scheme",
        "speaks_responses",
        "secrets",
    )

    def __init__(
        self,
        name: str,
        kind: str,
        target: HttpTarget,
        base_path: str,
        model: str | None,
        auth_headers: tuple[tuple[bytes, bytes], ...],
        aws: AwsSigning | None = None,
        path_override: str | None = None,
        azure_deployment_version: str | None = None,
        vertex_location: str = "",
        tokenize: bool = False,
    ) -> None:
        self.name = name
        self.kind = kind
        self.format, self.genai_name = KINDS[kind]
        self.target = target
        self.base_path = base_path.rstrip("/")
        self.path_override = path_override
        self.model = model
        self.auth_headers = auth_headers
        self.aws = aws
        # Azure: None for the v1 API (model in the body); a dated version for deployment URLs.
        self.azure_deployment_version = azure_deployment_version
        self.vertex_location = vertex_location
        self.tokenize = tokenize
        self.scheme = "https" if target.tls else "http"
        # OpenAI and Azure's v1 API serve /responses themselves; the others get it translated.
        self.speaks_responses = kind == "openAI" or (kind == "azure" and azure_deployment_version is None)
        # The credentials the gateway sends this provider, redacted from what it answers.
        secrets = [v.decode("latin-1").removeprefix("Bearer ") for _, v in auth_headers]
        if aws is not None:
            creds = aws.credentials
            secrets += [c for c in (creds.access_key, creds.secret_key, creds.token) if c]
        self.secrets = tuple(secrets)

    def path(self, op: str, model: str) -> str:
        base = self.base_path
        fmt = self.format
        if fmt == F_OPENAI:
            suffix = {OP_RESPONSES: "/responses", OP_EMBEDDINGS: "/embeddings"}.get(op, "/chat/completions")
            version = self.azure_deployment_version
            if version is not None:
                return f"{base}/deployments/{quote(model, safe='')}{suffix}?api-version={quote(version, safe='')}"
            if self.path_override and op in (OP_CHAT, OP_STREAM):
                return self.path_override
            return base + suffix
        if self.path_override and op in (OP_CHAT, OP_STREAM):
            return self.path_override
        if fmt == F_ANTHROPIC:
            return base + ("/messages/count_tokens" if op == OP_COUNT_TOKENS else "/messages")
        if fmt == F_GEMINI:
            vertex = self.kind == "vertex"
            if vertex and "/" not in model:
                model = f"publishers/google/models/{model}"
            elif "/" not in model:
                model = f"models/{model}"
            if op == OP_EMBEDDINGS:
                return f"{base}/{model}:predict" if vertex else f"{base}/{model}:batchEmbedContents"
            if op == OP_COUNT_TOKENS:
                return f"{base}/{model}:countTokens"
            return (
                f"{base}/{model}:streamGenerateContent?alt=sse"
                if op == OP_STREAM
                else f"{base}/{model}:generateContent"
            )
        # Bedrock: the model id (or ARN) is one path segment
        action = {OP_STREAM: "converse-stream", OP_EMBEDDINGS: "invoke"}.get(op, "converse")
        return f"{base}/model/{quote(model, safe='')}/{action}"

    def headers(self, path: str, body: bytes, extra: tuple[tuple[bytes, bytes], ...] = ()) -> list[tuple[bytes, bytes]]:
        """Request headers for the provider: content type, auth (SigV4 over ``body``), extras."""
        headers = [_JSON, *self.auth_headers, *extra]
        if self.format == F_ANTHROPIC and not any(k == b"anthropic-version" for k, _ in extra):
            headers.append((b"anthropic-version", ANTHROPIC_VERSION))
        aws = self.aws
        if aws is not None:
            url = f"{self.scheme}://{self.target.host_header.decode()}{path}"
            headers += sign_sigv4(aws.credentials, aws.region, url, [("content-type", "application/json")], body)
        return headers
