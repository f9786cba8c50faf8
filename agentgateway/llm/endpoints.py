"""Provider endpoints compiled from either config form (``llm.models[]`` or ``ai`` backends):
the host, port and TLS to connect to, the path prefix, and the credentials the gateway sends.

Where a provider is, in agentgateway's terms:

- the default endpoint of its kind (https: OpenAI, Anthropic, Gemini, Vertex, Azure, Bedrock; a
  preset's base URL, which also gives its path prefix);
- ``baseUrl`` replaces scheme, host and port; its path (if any) becomes the path prefix, an
  empty path keeps the provider's default path; https means TLS;
- ``hostOverride`` replaces host and port (plain TCP unless ``backendTLS`` says otherwise or an
  https ``baseUrl`` comes with it); without a path prefix, requests in the provider's own API keep
  the client's path (see providers.py);
- ``pathPrefix`` wins over the path of ``baseUrl``; ``pathOverride`` fixes the whole path.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from agentgateway.config import referenced
from agentgateway.config.errors import ConfigError
from agentgateway.config.paths import resolve_file
from agentgateway.config.schema import BackendAuth, BackendKey, BackendTls, FileRef, GcpAuth, Secret
from agentgateway.llm.providers import (
    CUSTOM_FORMATS,
    PRESETS,
    AwsSigning,
    AzureEndpoint,
    Provider,
)
from agentgateway.upstream.backend_auth import compile_backend_auth
from agentgateway.upstream.target import HttpTarget, split_host_port

if TYPE_CHECKING:  # botocore is imported when a config names Bedrock (startup time)
    from botocore.credentials import Credentials

# (host, port, tls settings, label, where) → HttpTarget; provided by the config compiler.
MakeHttpTarget = Callable[[str, int, BackendTls | None, str, str], HttpTarget]

# Provider names the ``provider`` string may be (agentgateway's LocalBuiltinModelAIProvider).
BUILTIN_KINDS = {
    "openai": "openAI",
    "openAI": "openAI",
    "anthropic": "anthropic",
    "gemini": "gemini",
    "vertex": "vertex",
    "bedrock": "bedrock",
    "azure": "azure",
}
_DEFAULT_URL = {
    "openAI": "https://api.openai.com",
    "anthropic": "https://api.anthropic.com",
    "gemini": "https://generativelanguage.googleapis.com",
}


class ProviderSpec:
    """The pieces of a provider from either config form, before compilation."""

    __slots__ = (
        "name",
        "kind",
        "model",
        "api_key",
        "base_url",
        "host_override",
        "path_override",
        "path_prefix",
        "tokenize",
        "region",
        "project",
        "azure_resource",
        "azure_type",
        "azure_version",
        "azure_project",
        "auth",
        "tls",
        "gemini_native",
        "formats",
        "preset",
        "genai_name",
        "base_dir",
        "guardrail",
    )

    def __init__(self, name: str, kind: str) -> None:
        self.name = name
        self.kind = kind
        self.model: str | None = None
        self.api_key: str | None = None
        self.base_url: str | None = None
        self.host_override: str | None = None
        self.path_override: str | None = None
        self.path_prefix: str | None = None
        self.tokenize = False
        self.region: str | None = None
        self.project: str | None = None
        self.azure_resource: str | None = None
        self.azure_type: str | None = None
        self.azure_version: str | None = None
        self.azure_project: str | None = None
        self.auth: BackendAuth | None = None
        self.tls: BackendTls | None = None
        self.gemini_native = False
        # custom providers: format → path (None: the default one)
        self.formats: dict[str, str | None] = {}
        self.preset: str | None = None
        self.genai_name: str | None = None
        self.base_dir: Path | None = None
        # bedrock: (guardrailIdentifier, guardrailVersion)
        self.guardrail: tuple[str, str] | None = None


def read_secret(secret: Secret, base_dir: Path | None, where: str) -> str:
    if isinstance(secret, FileRef):
        path = resolve_file(os.path.expandvars(secret.file), base_dir, f"{where}.file")
        try:
            return referenced.read_text(path).strip()
        except OSError as exc:
            raise ConfigError(f"{where}.file", f"cannot read {path}: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{where}.file", f"{path} is not a text (UTF-8) file") from None
    return secret


def parse_url(url: str, where: str) -> tuple[str, int, bool, str]:
    """(host, port, https, path without a trailing slash) of an http(s) URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(where, f"{url!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None or parts.query or parts.fragment:
        raise ConfigError(where, f"{url!r}: a base URL has no user info, query or fragment")
    tls = parts.scheme == "https"
    try:
        port = parts.port or (443 if tls else 80)
    except ValueError:
        raise ConfigError(where, f"{url!r} has an invalid port") from None
    return parts.hostname, port, tls, parts.path.rstrip("/")


def _aws_credentials(auth: BackendAuth | None, where: str) -> Credentials:
    from botocore.credentials import Credentials

    aws = auth.aws if auth else None
    key = aws.access_key_id if aws and aws.access_key_id else os.environ.get("AWS_ACCESS_KEY_ID")
    secret = aws.secret_access_key if aws and aws.secret_access_key else os.environ.get("AWS_SECRET_ACCESS_KEY")
    token = aws.session_token if aws and aws.session_token else os.environ.get("AWS_SESSION_TOKEN")
    if not key or not secret:
        raise ConfigError(
            where,
            "Bedrock needs credentials: backendAuth.aws (accessKeyId, secretAccessKey), AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY in the environment, or an API key (apiKey / backendAuth.key)",
        )
    return Credentials(key, secret, token)


def _plain_key(key: str | BackendKey, base_dir: Path | None, where: str) -> str | None:
    """The secret of ``backendAuth.key`` when it goes in the provider's own header (no
    ``location``); None when a location is given (then the key is applied as configured)."""
    if isinstance(key, str):
        return key
    if key.location is not None:
        return None
    if (key.value is None) == (key.file is None):
        raise ConfigError(where, "exactly one of value or file must be set")
    if key.value is not None:
        return read_secret(key.value, base_dir, f"{where}.value")
    return read_secret(FileRef(file=key.file or ""), base_dir, where)


def custom_formats(formats: list[tuple[str, str | None]], where: str) -> dict[str, str | None]:
    """A custom provider's ``formats``: the APIs this gateway can send it."""
    out: dict[str, str | None] = {}
    if not formats:
        raise ConfigError(where, "a custom provider needs at least one format")
    for i, (kind, path) in enumerate(formats):
        if kind not in CUSTOM_FORMATS:
            raise ConfigError(f"{where}[{i}].type", f"{kind!r} is not supported (realtime and the native Gemini APIs)")
        if kind in out:
            raise ConfigError(f"{where}[{i}].type", f"{kind!r} is listed twice")
        if path is not None and not path.startswith("/"):
            raise ConfigError(f"{where}[{i}].path", "a path starts with /")
        out[kind] = path
    return out


def preset_spec(spec: ProviderSpec, preset: str) -> None:
    """A preset: a custom provider whose formats and endpoint agentgateway maintains."""
    _, genai, formats = PRESETS[preset]
    spec.kind = "custom"
    spec.preset = preset
    spec.genai_name = genai
    spec.formats = dict(formats)


def _vertex_host(region: str) -> str:
    if region == "global":
        return "aiplatform.googleapis.com"
    if region in ("us", "eu"):
        return f"aiplatform.{region}.rep.googleapis.com"
    return f"{region}-aiplatform.googleapis.com"


def compile_provider(spec: ProviderSpec, make_http: MakeHttpTarget, where: str) -> Provider:
    kind = spec.kind
    region = spec.region
    azure: AzureEndpoint | None = None
    vertex = ("", "")
    default_url: str | None = _DEFAULT_URL.get(kind)
    if kind == "vertex":
        if not spec.project:
            raise ConfigError(where, "vertex needs a project (vertexProject / projectId)")
        location = region or "global"
        vertex = (spec.project, location)
        default_url = f"https://{_vertex_host(location)}"
    elif kind == "bedrock":
        if not region:
            raise ConfigError(where, "bedrock needs a region (awsRegion / region)")
        default_url = f"https://bedrock-runtime.{region}.amazonaws.com"
    elif kind == "azure":
        foundry = spec.azure_type in ("foundry", "aiServices")
        resource = spec.azure_resource
        if resource:
            default_url = (
                f"https://{resource}.services.ai.azure.com" if foundry else f"https://{resource}.openai.azure.com"
            )
        elif not spec.base_url and not spec.host_override:
            raise ConfigError(where, "azure needs a resource name (azureResourceName / resourceName) or a baseUrl")
        project = spec.azure_project or resource or ""
        if foundry and not project:
            raise ConfigError(where, "an Azure Foundry resource needs a project (azureProjectName / projectName)")
        azure = AzureEndpoint(foundry, spec.azure_version or "v1", project)
    elif kind == "custom":
        if spec.preset is not None:
            default_url = PRESETS[spec.preset][0]
        elif not spec.base_url and not spec.host_override:
            raise ConfigError(where, "a custom provider needs a baseUrl (or hostOverride)")
    if spec.gemini_native and kind != "gemini":
        raise ConfigError(f"{where}.nativeApi", "applies to the gemini provider only")

    prefix: str | None = None
    tls = False
    host, port = "", 0
    if default_url is not None:
        host, port, tls, default_path = parse_url(default_url, where)
        prefix = default_path or None  # only a preset's URL has a path
    if spec.base_url:
        host, port, tls, path = parse_url(spec.base_url, f"{where}.baseUrl")
        prefix = path or None
    client_path = False
    if spec.host_override:
        try:
            host, port = split_host_port(spec.host_override)
        except ValueError as exc:
            raise ConfigError(f"{where}.hostOverride", str(exc)) from None
        if not spec.base_url:
            # TLS comes from backendTLS (or an https baseUrl), never from the port number
            tls = False
            client_path = prefix is None and kind != "custom"
    if spec.path_prefix is not None:
        if spec.path_prefix and not spec.path_prefix.startswith("/"):
            raise ConfigError(f"{where}.pathPrefix", "a path prefix starts with /")
        prefix = spec.path_prefix.rstrip("/")
        client_path = False
    if spec.path_override is not None and not spec.path_override.startswith("/"):
        raise ConfigError(f"{where}.pathOverride", "a path starts with /")

    tls_settings = spec.tls
    if tls_settings is None and tls:
        tls_settings = BackendTls()
    target = make_http(host, port, tls_settings, spec.name, where)

    # Credentials: the gateway's own, never the client's.
    key = spec.api_key
    auth = spec.auth
    awhere = f"{where}.auth"
    aws: AwsSigning | None = None
    headers: tuple[tuple[bytes, bytes], ...] = ()
    if auth is not None:
        if auth.passthrough is not None:
            raise ConfigError(
                f"{awhere}.passthrough", "not supported for LLM providers: a client's credentials never reach one"
            )
        if auth.key is not None and key is None:
            key = _plain_key(auth.key, spec.base_dir, f"{awhere}.key")
            if key is None:  # a key at a configured location
                target.auth = compile_backend_auth(auth, awhere, host, spec.base_dir)
        elif auth.key is None and not (auth.aws is not None and kind == "bedrock"):
            # gcp, azure, jwtSign, and aws outside Bedrock: the backend auth of any backend (the
            # token-exchange kinds need a client's request and are refused there by name)
            target.auth = compile_backend_auth(auth, awhere, host, spec.base_dir)
    if kind == "bedrock" and (key is None or (auth is not None and auth.aws is not None)) and target.auth is None:
        # SigV4 (explicit keys, or the environment's); a Bedrock API key is a bearer token instead
        creds = _aws_credentials(auth, where)
        aws = AwsSigning(creds, (auth.aws.region if auth and auth.aws and auth.aws.region else region) or "")
    elif kind == "vertex" and key is None and target.auth is None:
        # agentgateway's default for Vertex: a Google access token (Application Default Credentials)
        target.auth = compile_backend_auth(BackendAuth(gcp=GcpAuth()), awhere, host, spec.base_dir)
    if aws is None and key:
        value = key.encode()
        if kind == "anthropic":
            headers = ((b"x-api-key", value),)
        elif kind == "gemini" and spec.gemini_native:
            headers = ((b"x-goog-api-key", value),)
        elif kind == "azure":
            headers = ((b"api-key", value),)
        else:  # OpenAI and OpenAI-compatible APIs, custom providers, Vertex (an OAuth token), Bedrock API keys
            headers = ((b"authorization", b"Bearer " + value),)
    provider = Provider(
        spec.name,
        kind,
        target,
        prefix,
        spec.model,
        headers,
        aws,
        spec.path_override,
        azure,
        vertex,
        spec.tokenize,
        client_path,
        spec.gemini_native,
        spec.formats,
        spec.genai_name,
    )
    if spec.guardrail is not None:
        ident, version = spec.guardrail
        provider.guardrail = {"guardrailIdentifier": ident, "guardrailVersion": version}
    return provider


__all__ = [
    "BUILTIN_KINDS",
    "MakeHttpTarget",
    "ProviderSpec",
    "compile_provider",
    "custom_formats",
    "parse_url",
    "preset_spec",
    "read_secret",
]
