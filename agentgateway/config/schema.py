"""The local config file, as msgspec Structs: agentgateway's schema (camelCase keys).

Every struct forbids unknown keys. Keys that exist in the reference schema but that this gateway
does not implement yet are declared with the ``NotSupported`` marker: the file decodes, and
``find_unsupported`` then reports them with their path instead of silently ignoring them.
Fields marked "addition" are ours; they never change the meaning of a reference field.
"""

from __future__ import annotations

import functools
import typing
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

_NOT_SUPPORTED = "agentgateway:not-supported"
NotSupported = Annotated[Any | UnsetType, _NOT_SUPPORTED]


class Schema(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, rename="camel", omit_defaults=True):
    """Base of every config struct."""


# ---------------------------------------------------------------- config: (static settings)


class LoggingSettings(Schema, frozen=True):
    format: Literal["text", "json"] | None = None
    level: str | None = None
    filter: NotSupported = UNSET
    fields: NotSupported = UNSET


class BackendSettings(Schema, frozen=True):
    connect_timeout: str | None = None
    pool_idle_timeout: str | None = None
    pool_max_size: int | None = None
    keepalives: NotSupported = UNSET


class SessionSettings(Schema, frozen=True):
    # 64 hex characters (e.g. `openssl rand -hex 32`); also read from SESSION_KEY
    key: str | None = None


class McpSettings(Schema, frozen=True):
    session_ttl: str | None = None


class RawConfig(Schema, frozen=True):
    admin_addr: str | None = None
    stats_addr: str | None = None
    readiness_addr: str | None = None
    # addition: worker processes sharing the listeners (default: one per core)
    workers: int | None = None
    logging: LoggingSettings | None = None
    session: SessionSettings | None = None
    mcp: McpSettings | None = None
    backend: BackendSettings | None = None
    connection_termination_deadline: str | None = None
    connection_min_termination_deadline: str | None = None
    worker_threads: NotSupported = UNSET
    tracing: NotSupported = UNSET
    metrics: NotSupported = UNSET
    histograms: NotSupported = UNSET
    dns: NotSupported = UNSET
    enable_ipv6: NotSupported = UNSET
    hbone: NotSupported = UNSET
    xds_address: NotSupported = UNSET
    xds_auth_token: NotSupported = UNSET
    ca_address: NotSupported = UNSET
    ca_auth_token: NotSupported = UNSET
    namespace: NotSupported = UNSET
    gateway: NotSupported = UNSET
    trust_domain: NotSupported = UNSET
    additional_trust_domains: NotSupported = UNSET
    skip_validate_trust_domain: NotSupported = UNSET
    service_account: NotSupported = UNSET
    cluster_id: NotSupported = UNSET
    network: NotSupported = UNSET
    local_xds_path: NotSupported = UNSET
    custom_functions: NotSupported = UNSET
    model_catalog: NotSupported = UNSET
    database: NotSupported = UNSET
    storage: NotSupported = UNSET
    standard_attributes: NotSupported = UNSET
    sensitive_headers: NotSupported = UNSET


# ---------------------------------------------------------------- frontendPolicies:


class FrontendHttp(Schema, frozen=True):
    max_buffer_size: int | None = None
    http1_max_headers: int | None = None
    http1_idle_timeout: str | None = None
    # addition: total bytes of request line + headers before 431 (default 64 KiB)
    max_header_size: int | None = None
    # addition: time a client has to send a complete request head before the connection is closed
    header_read_timeout: str | None = None
    # addition: largest request body accepted, in bytes, answered with 413 beyond it (default: no limit)
    max_request_body_size: int | None = None
    http2_window_size: NotSupported = UNSET
    http2_connection_window_size: NotSupported = UNSET
    http2_frame_size: NotSupported = UNSET
    http2_keepalive_interval: NotSupported = UNSET
    http2_keepalive_timeout: NotSupported = UNSET
    max_connection_duration: NotSupported = UNSET


class FrontendTls(Schema, frozen=True):
    tls_handshake_timeout: str | None = None
    alpn: NotSupported = UNSET
    min_version: NotSupported = UNSET
    max_version: NotSupported = UNSET
    cipher_suites: NotSupported = UNSET
    key_exchange_groups: NotSupported = UNSET


class FrontendPolicies(Schema, frozen=True):
    http: FrontendHttp | None = None
    tls: FrontendTls | None = None
    tcp: NotSupported = UNSET
    network_authorization: NotSupported = UNSET
    network_ext_authz: NotSupported = UNSET
    proxy_protocol: NotSupported = UNSET
    proxy: NotSupported = UNSET
    connect: NotSupported = UNSET
    access_log: NotSupported = UNSET
    logging: NotSupported = UNSET
    tracing: NotSupported = UNSET
    metrics: NotSupported = UNSET


# ---------------------------------------------------------------- routes and matches


class PathMatch(Schema, frozen=True):
    """Exactly one of the three."""

    exact: str | None = None
    path_prefix: str | None = None
    regex: str | None = None


class ValueMatch(Schema, frozen=True):
    """Exactly one of the two."""

    exact: str | None = None
    regex: str | None = None


class HeaderMatch(Schema, frozen=True):
    name: str
    value: ValueMatch


class QueryMatch(Schema, frozen=True):
    name: str
    value: ValueMatch


class RouteMatch(Schema, frozen=True):
    path: PathMatch | None = None
    method: str | None = None
    headers: list[HeaderMatch] = []
    query: list[QueryMatch] = []


class BackendTls(Schema, frozen=True):
    cert: str | None = None
    key: str | None = None
    root: str | None = None
    hostname: str | None = None
    insecure: bool = False
    insecure_host: bool = False
    alpn: NotSupported = UNSET
    subject_alt_names: NotSupported = UNSET
    key_exchange_groups: NotSupported = UNSET
    spiffe: NotSupported = UNSET


class BackendPolicies(Schema, frozen=True):
    """Policies that apply to the call to one backend."""

    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    request_header_modifier: NotSupported = UNSET
    response_header_modifier: NotSupported = UNSET
    request_redirect: NotSupported = UNSET
    request_mirror: NotSupported = UNSET
    transformations: NotSupported = UNSET
    backend_auth: BackendAuth | None = None
    backend_tunnel: NotSupported = UNSET
    backend_http: NotSupported = UNSET
    backend_tcp: NotSupported = UNSET
    http: NotSupported = UNSET
    tcp: NotSupported = UNSET
    health: NotSupported = UNSET
    inference_routing: NotSupported = UNSET
    session_affinity: NotSupported = UNSET
    mcp_authorization: NotSupported = UNSET
    mcp_authentication: NotSupported = UNSET
    mcp_guardrails: NotSupported = UNSET
    ext_mcp: NotSupported = UNSET
    a2a: NotSupported = UNSET
    ai: AiPolicy | None = None
    authorization: NotSupported = UNSET
    ext_authz: NotSupported = UNSET


# ---------------------------------------------------------------- LLM: ai backends, policies.ai, llm:


class SecretFile(Schema, frozen=True):
    """A secret read from a file (``apiKey: {file: path}``), trailing whitespace removed."""

    file: str


Secret = str | SecretFile


class AwsAuth(Schema, frozen=True):
    """Explicit AWS credentials for SigV4 (otherwise AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY /
    AWS_SESSION_TOKEN from the environment)."""

    access_key_id: str | None = None
    secret_access_key: str | None = None
    session_token: str | None = None
    region: str | None = None
    assume_role_arn: NotSupported = UNSET
    assume_role_session_name: NotSupported = UNSET


class BackendAuth(Schema, frozen=True):
    """How the gateway authenticates to a provider (the client's own credential is never sent)."""

    key: Secret | None = None
    aws: AwsAuth | None = None
    passthrough: NotSupported = UNSET
    gcp: NotSupported = UNSET
    azure: NotSupported = UNSET
    copilot: NotSupported = UNSET
    jwt_sign: NotSupported = UNSET
    oauth_token_exchange: NotSupported = UNSET
    cross_app_access: NotSupported = UNSET


class AiModelProvider(Schema, frozen=True):
    """``openAI``, ``anthropic``, ``gemini``: ``model`` overrides the request's model when set."""

    model: str | None = None


class AiVertexProvider(Schema, frozen=True):
    project_id: str
    model: str | None = None
    region: str | None = None


class AiBedrockProvider(Schema, frozen=True):
    region: str
    model: str | None = None
    guardrail_identifier: NotSupported = UNSET
    guardrail_version: NotSupported = UNSET


class AiAzureProvider(Schema, frozen=True):
    """Azure OpenAI: ``resourceName`` → https://{resourceName}.openai.azure.com; ``apiVersion``
    ``v1`` (default) uses the v1 API, a dated version the deployments API."""

    model: str | None = None
    resource_name: str | None = None
    resource_type: Literal["openAI", "foundry"] | None = None
    # quote a dated version in YAML ("2024-10-21"), or it reads as a date
    api_version: str | None = None


class AiProvider(Schema, frozen=True):
    """Exactly one provider kind."""

    open_ai: AiModelProvider | None = msgspec.field(default=None, name="openAI")
    anthropic: AiModelProvider | None = None
    gemini: AiModelProvider | None = None
    vertex: AiVertexProvider | None = None
    bedrock: AiBedrockProvider | None = None
    azure: AiAzureProvider | None = None
    copilot: NotSupported = UNSET
    custom: NotSupported = UNSET


class AiNamedProvider(Schema, frozen=True):
    provider: AiProvider
    name: str | None = None
    host_override: str | None = None
    path_override: str | None = None
    path_prefix: str | None = None
    tokenize: bool = False
    policies: BackendPolicies | None = None


class AiGroup(Schema, frozen=True):
    providers: list[AiNamedProvider]


class AiBackend(Schema, frozen=True):
    """``ai:``: one provider (``provider``), or priority ``groups`` of providers for failover."""

    name: str | None = None
    provider: AiProvider | None = None
    host_override: str | None = None
    path_override: str | None = None
    path_prefix: str | None = None
    tokenize: bool = False
    groups: list[AiGroup] = []
    policies: BackendPolicies | None = None


class RegexRule(Schema, frozen=True):
    """One of ``builtin`` (email, creditCard, ssn, phoneNumber, caSin) or ``pattern``."""

    builtin: Literal["email", "creditCard", "ssn", "phoneNumber", "caSin"] | None = None
    pattern: str | None = None
    name: str | None = None


class RegexGuardSpec(Schema, frozen=True):
    action: Literal["mask", "reject"] = "mask"
    rules: list[RegexRule] = []


class GuardRejection(Schema, frozen=True):
    status: int = 403
    body: str | None = None
    headers: NotSupported = UNSET


class WebhookTarget(Schema, frozen=True):
    host: str | None = None
    backend: NotSupported = UNSET
    service: NotSupported = UNSET


class WebhookGuardSpec(Schema, frozen=True):
    target: WebhookTarget
    forward_header_matches: NotSupported = UNSET


class PromptGuardRule(Schema, frozen=True):
    """One guard: exactly one of ``regex`` or ``webhook``."""

    regex: RegexGuardSpec | None = None
    webhook: WebhookGuardSpec | None = None
    rejection: GuardRejection | None = None
    scope: NotSupported = UNSET
    open_ai_moderation: NotSupported = msgspec.field(default=UNSET, name="openAIModeration")
    bedrock_guardrails: NotSupported = UNSET
    google_model_armor: NotSupported = UNSET
    azure_content_safety: NotSupported = UNSET


class PromptGuard(Schema, frozen=True):
    request: list[PromptGuardRule] = []
    response: list[PromptGuardRule] = []
    streaming: NotSupported = UNSET


class PromptMessage(Schema, frozen=True):
    role: str
    content: str


class PromptEnrichment(Schema, frozen=True):
    prepend: list[PromptMessage] = []
    append: list[PromptMessage] = []


class AiPolicy(Schema, frozen=True):
    """``policies.ai``: request shaping and guards for LLM traffic."""

    prompt_guard: PromptGuard | None = None
    defaults: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    prompts: PromptEnrichment | None = None
    model_aliases: dict[str, str] = {}
    transformations: NotSupported = UNSET
    final_transformations: NotSupported = UNSET
    prompt_caching: NotSupported = UNSET
    routes: NotSupported = UNSET
    models: NotSupported = UNSET


class DirectResponse(Schema, frozen=True):
    status: int = 200
    body: str | None = None
    body_expression: NotSupported = UNSET
    headers: NotSupported = UNSET
    conditional: NotSupported = UNSET


class RoutePolicies(Schema, frozen=True):
    """Route-level policies (the reference's FilterOrPolicy). Backend policies are accepted here too
    and apply to every backend of the route."""

    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    request_header_modifier: NotSupported = UNSET
    response_header_modifier: NotSupported = UNSET
    request_redirect: NotSupported = UNSET
    url_rewrite: NotSupported = UNSET
    request_mirror: NotSupported = UNSET
    direct_response: DirectResponse | None = None
    cors: NotSupported = UNSET
    csrf: NotSupported = UNSET
    authorization: NotSupported = UNSET
    mcp_authorization: NotSupported = UNSET
    mcp_authentication: NotSupported = UNSET
    mcp_guardrails: NotSupported = UNSET
    ext_mcp: NotSupported = UNSET
    a2a: NotSupported = UNSET
    ai: AiPolicy | None = None
    backend_tunnel: NotSupported = UNSET
    backend_auth: BackendAuth | None = None
    local_rate_limit: NotSupported = UNSET
    remote_rate_limit: NotSupported = UNSET
    jwt_auth: NotSupported = UNSET
    oidc: NotSupported = UNSET
    basic_auth: NotSupported = UNSET
    api_key: NotSupported = UNSET
    ext_authz: NotSupported = UNSET
    ext_proc: NotSupported = UNSET
    transformations: NotSupported = UNSET
    buffer: NotSupported = UNSET
    timeout: NotSupported = UNSET
    retry: NotSupported = UNSET
    delay: NotSupported = UNSET
    host_rewrite: NotSupported = UNSET
    health: NotSupported = UNSET
    http: NotSupported = UNSET
    tcp: NotSupported = UNSET


class McpHost(Schema, frozen=True):
    """Where an HTTP MCP server is: ``host`` is a URL (``http://host:port/path``, https for TLS) or a
    plain ``host:port`` with ``port`` and ``path`` given separately."""

    host: str | None = None
    port: int | None = None
    path: str | None = None
    backend: NotSupported = UNSET


class McpStdio(Schema, frozen=True):
    cmd: str
    args: list[str] = []
    env: dict[str, str] = {}
    clear_env: bool = False


class McpTargetPolicies(Schema, frozen=True):
    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    mcp_authorization: NotSupported = UNSET
    ext_mcp: NotSupported = UNSET
    request_header_modifier: NotSupported = UNSET
    transformations: NotSupported = UNSET
    backend_auth: NotSupported = UNSET
    http: NotSupported = UNSET
    tcp: NotSupported = UNSET
    backend_tunnel: NotSupported = UNSET


class McpTarget(Schema, frozen=True):
    """One upstream MCP server: exactly one of ``stdio``, ``mcp`` (streamable HTTP) or ``sse``."""

    name: str
    stdio: McpStdio | None = None
    mcp: McpHost | None = None
    sse: McpHost | None = None
    openapi: NotSupported = UNSET
    policies: McpTargetPolicies | None = None


class McpBackend(Schema, frozen=True):
    targets: list[McpTarget]
    stateful_mode: Literal["stateful", "stateless"] = "stateful"
    prefix_mode: Literal["always", "conditional", "never"] | None = None
    failure_mode: Literal["failClosed", "failOpen"] | None = None


class RouteBackend(Schema, frozen=True):
    """One entry of ``routes[].backends``: exactly one of ``host`` or ``backend`` (a named backend)."""

    weight: int = 1
    policies: BackendPolicies | None = None
    host: str | None = None
    backend: str | None = None
    mcp: McpBackend | None = None
    ai: AiBackend | None = None
    service: NotSupported = UNSET
    aws: NotSupported = UNSET
    dynamic: NotSupported = UNSET
    internal: NotSupported = UNSET
    route_group: NotSupported = UNSET


class Route(Schema, frozen=True):
    name: str | None = None
    namespace: str | None = None
    rule_name: str | None = None
    hostnames: list[str] = []
    matches: list[RouteMatch] = []
    policies: RoutePolicies | None = None
    backends: list[RouteBackend] = []


class ListenerTls(Schema, frozen=True):
    cert: str
    key: str
    min_tls_version: Literal["TLS_V1_0", "TLS_V1_1", "TLS_V1_2", "TLS_V1_3"] | None = msgspec.field(
        default=None, name="minTLSVersion"
    )
    max_tls_version: Literal["TLS_V1_0", "TLS_V1_1", "TLS_V1_2", "TLS_V1_3"] | None = msgspec.field(
        default=None, name="maxTLSVersion"
    )
    root: NotSupported = UNSET
    cipher_suites: NotSupported = UNSET
    key_exchange_groups: NotSupported = UNSET


class Listener(Schema, frozen=True):
    name: str | None = None
    namespace: str | None = None
    hostname: str | None = None
    protocol: Literal["HTTP", "HTTPS", "TLS", "TCP", "HBONE"] = "HTTP"
    tls: ListenerTls | None = None
    routes: list[Route] = []
    tcp_routes: NotSupported = UNSET
    policies: NotSupported = UNSET
    gateway_name: NotSupported = UNSET


class Bind(Schema, frozen=True):
    port: int
    listeners: list[Listener] = []
    mode: NotSupported = UNSET
    tunnel_protocol: NotSupported = UNSET


class NamedBackend(Schema, frozen=True):
    """A top-level ``backends[]`` entry that routes refer to by name."""

    name: str
    host: str | None = None
    policies: BackendPolicies | None = None
    mcp: McpBackend | None = None
    ai: AiBackend | None = None
    aws: NotSupported = UNSET
    internal: NotSupported = UNSET


class McpShortcut(McpBackend, frozen=True):
    """The ``mcp:`` shortcut: one MCP endpoint (``/mcp`` and ``/sse``) on its own port."""

    port: int = 3000
    policies: RoutePolicies | None = None
    gateways: NotSupported = UNSET
    dns_rebinding_protection: NotSupported = UNSET


class LlmParams(Schema, frozen=True):
    """``llm.models[].params``: how to reach the provider for this model."""

    model: str | None = None
    api_key: Secret | None = None
    base_url: str | None = None
    tokenize: bool = False
    vertex_region: str | None = None
    vertex_project: str | None = None
    azure_resource_name: str | None = None
    azure_resource_type: Literal["openAI", "foundry"] | None = None
    azure_api_version: str | None = None
    # addition: the region of a Bedrock model (SigV4 credentials come from the environment)
    aws_region: str | None = None


class LlmModel(Schema, frozen=True):
    name: str
    provider: Literal["openAI", "anthropic", "gemini", "vertex", "bedrock", "azure"]
    params: LlmParams | None = None
    visibility: NotSupported = UNSET
    transformation: NotSupported = UNSET
    matches: NotSupported = UNSET
    health: NotSupported = UNSET
    response_headers: NotSupported = UNSET
    request_headers: NotSupported = UNSET
    prompt_caching: NotSupported = UNSET
    guardrails: NotSupported = UNSET


class VirtualTarget(Schema, frozen=True):
    model: str
    priority: int = 0
    weight: int = 1


class FailoverRouting(Schema, frozen=True):
    targets: list[VirtualTarget]
    # addition: how long each target has to answer (response head) before the next is tried
    timeout: str | None = None


class WeightedRouting(Schema, frozen=True):
    targets: list[VirtualTarget]


class VirtualRouting(Schema, frozen=True):
    """Exactly one of ``failover`` or ``weighted``."""

    failover: FailoverRouting | None = None
    weighted: WeightedRouting | None = None
    conditional: NotSupported = UNSET


class VirtualModel(Schema, frozen=True):
    name: str
    routing: VirtualRouting


class LlmShortcut(Schema, frozen=True):
    """The ``llm:`` shortcut: an OpenAI- and Anthropic-compatible endpoint on its own port."""

    port: int = 4000
    models: list[LlmModel] = []
    virtual_models: list[VirtualModel] = []
    policies: RoutePolicies | None = None
    gateways: NotSupported = UNSET
    tls: NotSupported = UNSET
    providers: NotSupported = UNSET
    guardrails: NotSupported = UNSET


class LocalConfig(Schema, frozen=True):
    config: RawConfig | None = None
    binds: list[Bind] = []
    frontend_policies: FrontendPolicies | None = None
    backends: list[NamedBackend] = []
    gateways: NotSupported = UNSET
    routes: NotSupported = UNSET
    tcp_routes: NotSupported = UNSET
    policies: NotSupported = UNSET
    workloads: NotSupported = UNSET
    services: NotSupported = UNSET
    route_groups: NotSupported = UNSET
    llm: LlmShortcut | None = None
    mcp: McpShortcut | None = None
    ui: NotSupported = UNSET


# ---------------------------------------------------------------- unsupported-key report


@functools.cache
def _unsupported_fields(cls: type[Schema]) -> tuple[tuple[str, str], ...]:
    """(attribute, key in the file) of every NotSupported field of ``cls``."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out = []
    for f in msgspec.structs.fields(cls):
        hint = hints[f.name]
        if typing.get_origin(hint) is Annotated and _NOT_SUPPORTED in hint.__metadata__:
            out.append((f.name, f.encode_name))
    return tuple(out)


def find_unsupported(node: object, path: str = "") -> str | None:
    """Path of the first key present in the file that this gateway does not implement yet."""
    if isinstance(node, Schema):
        cls = type(node)
        for attr, key in _unsupported_fields(cls):
            if getattr(node, attr) is not UNSET:
                return f"{path}.{key}" if path else key
        for f in msgspec.structs.fields(cls):
            child = getattr(node, f.name)
            if isinstance(child, Schema | list):
                found = find_unsupported(child, f"{path}.{f.encode_name}" if path else f.encode_name)
                if found:
                    return found
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found = find_unsupported(item, f"{path}[{i}]")
            if found:
                return found
    return None
