"""The local config file, as msgspec Structs: agentgateway's schema (camelCase keys).

Every struct forbids unknown keys. Keys that exist in the reference schema but that this gateway
does not implement yet are declared with the ``NotSupported`` marker: the file decodes, and
``find_unsupported`` then reports them with their path instead of silently ignoring them.
Fields marked "addition" are ours; they never change the meaning of a reference field.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, UnsetType

_NOT_SUPPORTED = "agentgateway:not-supported"
NotSupported = Annotated[Any | UnsetType, _NOT_SUPPORTED]


class RefusedForms:
    """Field metadata (``Annotated[<type>, RefusedForms(...)]``): value forms agentgateway accepts
    for the key that this gateway does not implement yet. They are refused by name (``<path>: ...
    not supported``) before the file is decoded, so the field's type stays what the code uses.

    ``strings``: any string value; ``objects``: any mapping; ``lists``: any list; ``values``: these
    values (of an enum); ``keys``: a mapping holding one of these keys (``conditional``), refused at
    ``<path>.<key>``."""

    __slots__ = ("strings", "objects", "lists", "values", "keys", "what")

    def __init__(
        self,
        what: str,
        *,
        strings: bool = False,
        objects: bool = False,
        lists: bool = False,
        values: tuple[str, ...] = (),
        keys: tuple[str, ...] = (),
    ) -> None:
        self.what = what
        self.strings = strings
        self.objects = objects
        self.lists = lists
        self.values = values
        self.keys = keys

    def refusal(self, value: object, path: str) -> tuple[str, str] | None:
        """(path, reason) when ``value`` is one of the refused forms."""
        if isinstance(value, str) and (self.strings or value in self.values):
            return path, f"{self.what} ({value!r}) is not supported"
        if isinstance(value, dict):
            for key in self.keys:
                if key in value:
                    return f"{path}.{key}", f"the {key} form of {self.what} is not supported"
            if self.objects:
                return path, f"{self.what} in this form is not supported"
        if isinstance(value, list) and self.lists:
            return path, f"{self.what} as a list is not supported"
        return None


# The conditional form (``{conditional: [{condition, ...}]}``) of agentgateway's policies.
CONDITIONAL = RefusedForms("the policy", keys=("conditional",))

# What ``/config_dump`` must not show, marked on the field (``Annotated[<type>, MARKER]``) so that
# config/dump.py redacts by type wherever the struct is used:
# text that is a secret (a ``{file: path}`` form is a path and is shown; a map: its values)
SECRET = "agentgateway:secret"
# a file path (shown) or inline PEM (redacted)
KEY_MATERIAL = "agentgateway:key-material"
# header name → value: the values of credential headers (authorization, cookie, x-api-key, ...)
CREDENTIAL_HEADERS = "agentgateway:credential-headers"
# JSON Web Keys (the list, or a JWKS as JSON text): private members (d, p, q, k, ...) are redacted
JWKS = "agentgateway:jwks"


class Schema(msgspec.Struct, kw_only=True, frozen=True, forbid_unknown_fields=True, rename="camel", omit_defaults=True):
    """Base of every config struct."""


# ---------------------------------------------------------------- config: (static settings)


class LoggingFields(Schema, frozen=True):
    """Fields removed from, and added to (name: CEL expression), a log line or span."""

    remove: list[str] | None = None
    add: dict[str, str] | None = None


class LoggingSettings(Schema, frozen=True):
    format: Literal["text", "json"] | None = None
    # agentgateway also takes a list of per-module levels, which has no meaning here
    level: Annotated[str | None, RefusedForms("a list of levels", lists=True)] = None
    # CEL: the requests logged (agentgateway keeps these for compatibility; frontendPolicies.accessLog
    # is the newer place, and wins where both say something)
    filter: str | None = None
    fields: LoggingFields | None = None
    database: NotSupported = UNSET


# A sampling rule: a probability (0.0-1.0), a boolean, or a CEL expression giving either.
SamplingRule = str | bool | float


class TracingSettings(Schema, frozen=True):
    """``config.tracing``: OTLP export of one span per request and the gateway's own calls."""

    otlp_endpoint: str | None = None
    headers: Annotated[dict[str, str] | None, SECRET] = None
    otlp_protocol: Literal["grpc", "http"] | None = None
    fields: LoggingFields | None = None
    random_sampling: SamplingRule | None = None
    client_sampling: SamplingRule | None = None
    path: str | None = None


class MetricFields(Schema, frozen=True):
    add: dict[str, str] | None = None


class MetricsSettings(Schema, frozen=True):
    remove: list[str] | None = None
    fields: MetricFields | None = None


class BackendSettings(Schema, frozen=True):
    connect_timeout: str | None = None
    # addition: time a backend has to send its response head once the request is sent, for
    # routes without a timeout policy (default 300s)
    response_header_timeout: str | None = None
    pool_idle_timeout: str | None = None
    pool_max_size: int | None = None
    keepalives: NotSupported = UNSET


class SessionSettings(Schema, frozen=True):
    # 64 hex characters (e.g. `openssl rand -hex 32`); also read from SESSION_KEY
    key: Annotated[str | None, SECRET] = None


class McpSettings(Schema, frozen=True):
    session_ttl: str | None = None
    # Additions: bounds on the sessions that hold stdio processes.
    stdio_session_ttl: str | None = None
    max_stdio_sessions: int | None = None
    # Additions: sessions one client identity (an anonymous one: its address) may hold per worker,
    # of any kind and holding stdio processes.
    max_sessions_per_identity: int | None = None
    max_stdio_sessions_per_identity: int | None = None
    # addition: requests in flight to one streamable-HTTP MCP target per worker (each holds an
    # upstream connection); more wait their turn.
    max_upstream_connections: int | None = None


class RawConfig(Schema, frozen=True):
    # `off` disables a plane; unquoted, YAML reads it as false, which means the same.
    admin_addr: str | bool | None = None
    stats_addr: str | bool | None = None
    readiness_addr: str | bool | None = None
    # addition: worker processes sharing the listeners (default: one per core)
    workers: int | None = None
    logging: LoggingSettings | None = None
    session: SessionSettings | None = None
    mcp: McpSettings | None = None
    backend: BackendSettings | None = None
    connection_termination_deadline: str | None = None
    connection_min_termination_deadline: str | None = None
    # agentgateway's proxy threads: a count or a percentage of the cores ("50%"); mapped to worker
    # processes here (``workers`` wins when both are set)
    worker_threads: int | str | None = None
    tracing: TracingSettings | None = None
    metrics: MetricsSettings | None = None
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
    spiffe: NotSupported = UNSET


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
    # addition: longest pause between two reads of a request body before 408 (default 60s)
    request_body_idle_timeout: str | None = None
    # addition: slowest average request body rate, bytes/s, enforced after requestBodyMinRateGrace
    # (default 500; 0 turns it off)
    request_body_min_rate: int | None = None
    # addition: how long a request body may take before requestBodyMinRate applies (default 10s)
    request_body_min_rate_grace: str | None = None
    # addition: what an encoded slash or backslash in the request path (%2F, %5C, raw \) gets:
    # reject (400, the default) or decode (into /, before routing)
    escaped_slashes: Literal["reject", "decode"] | None = None
    # addition: peers (IP addresses or CIDRs) whose X-Forwarded-For/-Proto/-Host, Forwarded and
    # X-Real-IP headers are believed; from any other peer they are dropped (default: none)
    trusted_proxies: list[str] | None = None
    # HTTP/2 (server/http2.py): stream and connection flow-control windows, the largest frame
    # accepted, keep-alive pings (interval, and how long an answer may take), the largest request
    # header list
    http2_window_size: int | None = None
    http2_connection_window_size: int | None = None
    http2_frame_size: int | None = None
    http2_keepalive_interval: str | None = None
    http2_keepalive_timeout: str | None = None
    http2_max_header_size: int | None = None
    # addition: streams one HTTP/2 client connection may have open at once (default 100)
    http2_max_concurrent_streams: int | None = None
    http1_header_case: NotSupported = UNSET
    # a client connection this old is closed once it is idle (between requests)
    max_connection_duration: str | None = None


class FrontendTls(Schema, frozen=True):
    handshake_timeout: str | None = None
    # protocols offered to clients, most preferred first (default h2, http/1.1); each as text or
    # as the list of its bytes (the reference's form)
    alpn: list[str | list[int]] | None = None
    # the versions of every TLS listener that does not set its own
    min_version: TlsVersion | None = None
    max_version: TlsVersion | None = None
    cipher_suites: NotSupported = UNSET
    key_exchange_groups: NotSupported = UNSET


class AccessLogFields(Schema, frozen=True):
    remove: list[str] | None = None
    add: dict[str, str] | None = None


class OtlpLogging(Schema, frozen=True):
    """``accessLog.otlp``: access-log records exported as OTLP logs."""

    # the collector (host:port, or http(s)://host:port); addition: may be left out when tracing is
    # configured, the records then go to the tracing collector
    host: str | None = None
    backend: NotSupported = UNSET
    service: NotSupported = UNSET
    policies: NotSupported = UNSET
    filter: str | None = None
    fields: AccessLogFields | None = None
    protocol: Literal["grpc", "http"] | None = None
    path: str | None = None


class AccessLogPolicy(Schema, frozen=True):
    filter: str | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None
    otlp: OtlpLogging | None = None
    database: NotSupported = UNSET


class FrontendTracing(Schema, frozen=True):
    """``frontendPolicies.tracing``: the collector and span attributes for this gateway's requests."""

    host: str | None = None
    backend: NotSupported = UNSET
    service: NotSupported = UNSET
    policies: NotSupported = UNSET
    attributes: dict[str, str] | None = None
    resources: dict[str, str] | None = None
    remove: list[str] | None = None
    random_sampling: SamplingRule | None = None
    client_sampling: SamplingRule | None = None
    filter: str | None = None
    path: str | None = None
    protocol: Literal["grpc", "http"] | None = None


class Keepalive(Schema, frozen=True):
    """TCP keepalive probes (agentgateway's KeepaliveConfig): after ``time`` without traffic, a
    probe every ``interval``; ``retries`` unanswered probes drop the connection."""

    enabled: bool = True
    time: str | None = None  # default 3m
    interval: str | None = None  # default 3m
    retries: int = 9


class FrontendTcp(Schema, frozen=True):
    # keepalive probes on the connections clients open (set on the listening sockets)
    keepalives: Keepalive | None = None
    # addition: a connection relayed byte for byte (an accepted upgrade such as a WebSocket, a
    # TCP or TLS-passthrough route) that carries nothing either way for this long is closed
    # (default 1h)
    idle_timeout: str | None = None


class ProxyProtocol(Schema, frozen=True):
    """PROXY protocol headers read from every downstream connection (``v1``, ``v2`` or ``all``;
    ``strict``: required, ``optional``: read when present)."""

    version: Literal["v1", "v2", "all"] = "v2"
    mode: Literal["strict", "optional"] = "strict"


class FrontendPolicies(Schema, frozen=True):
    http: FrontendHttp | None = None
    tls: FrontendTls | None = None
    tcp: FrontendTcp | None = None
    network_authorization: NotSupported = UNSET
    network_ext_authz: NotSupported = UNSET
    proxy_protocol: ProxyProtocol | None = None
    # the same policy under agentgateway's other name for it (one of the two)
    proxy: ProxyProtocol | None = None
    connect: NotSupported = UNSET
    access_log: AccessLogPolicy | None = None
    # agentgateway's older name of accessLog
    logging: AccessLogPolicy | None = None
    tracing: FrontendTracing | None = None
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
    value: ValueMatch | Literal["invalid"]


class QueryMatch(Schema, frozen=True):
    name: str
    value: ValueMatch | Literal["invalid"]


class RouteMatch(Schema, frozen=True):
    # ``invalid`` (agentgateway's marker of a match that can never hold) is refused by name
    path: PathMatch | Literal["invalid"] | None = None
    method: str | None = None
    headers: list[HeaderMatch] = []
    query: list[QueryMatch] = []


class BackendTls(Schema, frozen=True):
    cert: str | None = None
    key: Annotated[str | None, KEY_MATERIAL] = None
    root: str | None = None
    hostname: str | None = None
    insecure: bool = False
    insecure_host: bool = False
    alpn: NotSupported = UNSET
    subject_alt_names: NotSupported = UNSET
    key_exchange_groups: NotSupported = UNSET
    spiffe: NotSupported = UNSET


# ---------------------------------------------------------------- traffic policies


class HeaderModifier(Schema, frozen=True):
    """``requestHeaderModifier`` / ``responseHeaderModifier``: applied add, then set, then remove."""

    add: Annotated[dict[str, str], CREDENTIAL_HEADERS] = {}
    set: Annotated[dict[str, str], CREDENTIAL_HEADERS] = {}
    remove: list[str] = []


class AuthorityRewrite(Schema, frozen=True):
    """Exactly one of the three (the string forms ``auto`` and ``none`` are also accepted)."""

    full: str | None = None
    host: str | None = None
    port: int | None = None


class PathRewrite(Schema, frozen=True):
    """Exactly one of the two."""

    full: str | None = None
    prefix: str | None = None


class UrlRewrite(Schema, frozen=True):
    authority: AuthorityRewrite | Literal["auto", "none"] | None = None
    path: PathRewrite | None = None


class RequestRedirect(Schema, frozen=True):
    scheme: str | None = None
    authority: AuthorityRewrite | Literal["auto", "none"] | None = None
    path: PathRewrite | None = None
    status: int | None = None


class SimpleBackendRef(Schema, frozen=True):
    """A backend named inline: exactly one of ``host`` or ``backend`` (a top-level backend)."""

    host: str | None = None
    backend: str | None = None
    service: NotSupported = UNSET


class RequestMirror(Schema, frozen=True):
    backend: SimpleBackendRef
    percentage: float


class Timeout(Schema, frozen=True):
    request_timeout: str | None = None
    backend_request_timeout: str | None = None
    response_idle_timeout: NotSupported = UNSET


class Retry(Schema, frozen=True):
    attempts: int = 1
    backoff: str | None = None
    codes: list[int] = []
    # CEL, compiled through policy.expression
    precondition: str | None = None
    condition: str | None = None
    postcondition: str | None = None


class LocalRateLimit(Schema, frozen=True):
    fill_interval: str
    max_tokens: int = 0
    tokens_per_fill: int = 0
    type: Literal["requests", "tokens"] = "requests"
    # addition: a CEL value that splits the bucket (one bucket per distinct value)
    key: str | None = None


class DescriptorEntry(Schema, frozen=True):
    key: str
    value: str


class RateLimitUnitLimit(Schema, frozen=True):
    """addition (Redis mode): the limit a descriptor is held to."""

    requests_per_unit: int
    unit: Literal["second", "minute", "hour", "day"]


class Descriptor(Schema, frozen=True):
    entries: list[DescriptorEntry]
    type: Literal["requests", "tokens"] = "requests"
    # CEL: what one request counts (default 1; tokens: llm.totalTokens); a failure skips it
    cost: str | None = None
    # addition, Redis mode only
    limit: RateLimitUnitLimit | None = None
    limit_override: NotSupported = UNSET


class RedisTarget(Schema, frozen=True):
    """addition: a Redis server that holds the counters instead of a rate limit service."""

    url: str
    timeout: str | None = None


class RemoteRateLimit(Schema, frozen=True):
    domain: str
    descriptors: list[Descriptor] = []
    failure_mode: Literal["failClosed", "failOpen", "FailClosed", "FailOpen"] = "failClosed"
    host: str | None = None
    backend: str | None = None
    # addition: Redis mode
    redis: RedisTarget | None = None
    # addition: deadline of one call to the service (default 1s)
    timeout: str | None = None
    service: NotSupported = UNSET
    policies: NotSupported = UNSET


class TransformSide(Schema, frozen=True):
    add: Annotated[dict[str, str], CREDENTIAL_HEADERS] = {}
    set: Annotated[dict[str, str], CREDENTIAL_HEADERS] = {}
    remove: list[str] = []
    body: str | None = None
    metadata: NotSupported = UNSET
    replace: NotSupported = UNSET


class Transformations(Schema, frozen=True):
    request: TransformSide | None = None
    response: TransformSide | None = None
    conditional: NotSupported = UNSET


class Eviction(Schema, frozen=True):
    duration: str | None = None
    restore_health: float | None = None
    consecutive_failures: int | None = None
    health_threshold: float | None = None


class Health(Schema, frozen=True):
    unhealthy_expression: str | None = None
    eviction: Eviction | None = None
    active: NotSupported = UNSET


class McpAuthorization(Schema, frozen=True):
    """CEL rules deciding which tools, prompts and resources of an MCP backend a caller may see and
    use: each rule a CEL string (allow) or ``{allow|deny|require: CEL}``."""

    rules: list[str | dict[str, str]]


# ---------------------------------------------------------------- security policies


class Cors(Schema, frozen=True):
    """``cors``: answered preflights and the response headers of allowed cross-origin requests."""

    allow_credentials: bool = False
    allow_headers: list[str] = []
    allow_methods: list[str] = []
    allow_origins: list[str] = []
    expose_headers: list[str] = []
    max_age: str | None = None


class Csrf(Schema, frozen=True):
    """``csrf``: unsafe methods must come from the request's own origin (or these)."""

    additional_origins: list[str] = []


class ExtAuthzBody(Schema, frozen=True):
    max_request_bytes: int = 8192
    allow_partial_message: bool = False
    pack_as_bytes: bool = False


class ExtAuthzGrpc(Schema, frozen=True):
    # static values sent as the check's context_extensions
    context: dict[str, str] = {}
    metadata: NotSupported = UNSET


class ExtAuthzHttp(Schema, frozen=True):
    # CEL expressions
    path: str | None = None
    redirect: str | None = None
    body: str | None = None
    add_request_headers: Annotated[dict[str, str], CREDENTIAL_HEADERS] = {}
    include_response_headers: list[str] = []
    # name → CEL (request variables, and the authorization answer as ``response.code``,
    # ``response.headers["..."]``, ``response.body``): the CEL variable ``extauthz`` afterwards
    metadata: dict[str, str] = {}


class ExtAuthzProtocol(Schema, frozen=True):
    """Exactly one of the two (gRPC when the whole key is unset)."""

    grpc: ExtAuthzGrpc | None = None
    http: ExtAuthzHttp | None = None


class DenyWithStatus(Schema, frozen=True):
    deny_with_status: int


class ExtAuthzCache(Schema, frozen=True):
    """``extAuthz.cache``: decisions reused per key (CEL values) for ``ttl``."""

    key: list[str]
    ttl: str
    max_entries: int = 10000


class ExtAuthz(Schema, frozen=True):
    """``extAuthz``: an external authorization service (Envoy's ext_authz, gRPC or HTTP)."""

    host: str | None = None
    backend: str | None = None
    policies: BackendPolicies | None = None
    protocol: ExtAuthzProtocol | None = None
    failure_mode: Literal["allow", "deny"] | DenyWithStatus = "deny"
    include_request_headers: list[str] = []
    include_request_body: ExtAuthzBody | None = None
    # addition: deadline of one check (default 2s)
    timeout: str | None = None
    service: NotSupported = UNSET
    cache: ExtAuthzCache | None = None
    conditional: NotSupported = UNSET


class FileRef(Schema, frozen=True):
    file: str


class HeaderLocation(Schema, frozen=True):
    name: str
    # removed from the value before validation, compared without case ("Bearer ", "Basic ")
    prefix: str | None = None


class NamedLocation(Schema, frozen=True):
    name: str


class AuthorizationLocation(Schema, frozen=True):
    """Exactly one: a header (with an optional prefix), a query parameter or a cookie."""

    header: HeaderLocation | None = None
    query_parameter: NamedLocation | None = None
    cookie: NamedLocation | None = None
    expression: NotSupported = UNSET


class BackendKey(Schema, frozen=True):
    """The object form of ``backendAuth.key``: ``value`` (inline or ``{file}``) or ``file``."""

    value: Annotated[str | FileRef | None, SECRET] = None
    file: str | None = None
    location: AuthorizationLocation | None = None


class Passthrough(Schema, frozen=True):
    location: NotSupported = UNSET


class GcpAuth(Schema, frozen=True):
    type: Literal["accessToken", "idToken", "AccessToken", "IdToken"] | None = None
    audience: str | None = None
    credential: NotSupported = UNSET


class AwsAuth(Schema, frozen=True):
    """Explicit credentials (``accessKeyId`` and ``secretAccessKey``), or none: the standard chain."""

    access_key_id: Annotated[str | None, SECRET] = None
    secret_access_key: Annotated[str | None, SECRET] = None
    session_token: Annotated[str | None, SECRET] = None
    region: str | None = None
    service_name: str | None = None
    assume_role: NotSupported = UNSET


COPILOT_AUTH = RefusedForms("backendAuth", values=("copilot",))


class JwtSign(Schema, frozen=True):
    """``backendAuth.jwtSign``: a short-lived JWT signed with ``signingKey`` on each request."""

    signing_key: Annotated[str | FileRef, KEY_MATERIAL]
    alg: Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"] = "RS256"
    kid: str | None = None
    claims: dict[str, Any] = {}
    ttl: str | None = None
    location: AuthorizationLocation | None = None


class OAuthClientAuth(Schema, frozen=True):
    """How the gateway authenticates to a token endpoint: ``method`` clientSecretBasic (the
    default), clientSecretPost or privateKeyJwt."""

    client_id: str
    client_secret: Annotated[str | FileRef | None, SECRET] = None
    method: Literal["clientSecretBasic", "clientSecretPost", "privateKeyJwt"] | None = None
    signing_key: Annotated[str | FileRef | None, KEY_MATERIAL] = None
    alg: Literal["RS256", "RS384", "RS512", "PS256", "ES256", "ES384"] = "RS256"
    kid: str | None = None
    assertion_audience: str | None = None
    certificate: NotSupported = UNSET
    certificate_header: NotSupported = UNSET


class TokenSpec(Schema, frozen=True):
    source: CredentialLocation | None = None
    token_type: str | None = None


class ActorTokenSpec(Schema, frozen=True):
    source: CredentialLocation
    token_type: str | None = None
    enforce_may_act: bool = False


class TokenCacheConfig(Schema, frozen=True):
    max_entries: int | None = None
    default_ttl: str | None = None


class OAuthTokenExchange(Schema, frozen=True):
    """``backendAuth.oauthTokenExchange``: the client's token exchanged at a token endpoint
    (RFC 8693, or the RFC 7523 JWT-bearer grant) for the backend's."""

    host: str | None = None
    backend: str | None = None
    service: NotSupported = UNSET
    policies: BackendPolicies | None = None
    path: str | None = None
    grant_type: Literal["tokenExchange", "jwtBearer"] = "tokenExchange"
    subject_token: TokenSpec | None = None
    actor_token: ActorTokenSpec | None = None
    audiences: list[str] = []
    scopes: list[str] = []
    resources: list[str] = []
    requested_token_type: str | None = None
    client_auth: OAuthClientAuth | None = None
    additional_params: dict[str, str] = {}
    authorization_location: CredentialLocation | None = None
    cache: TokenCacheConfig | None = None


class CrossAppAccessEndpoint(Schema, frozen=True):
    client_auth: OAuthClientAuth
    host: str | None = None
    backend: str | None = None
    service: NotSupported = UNSET
    policies: BackendPolicies | None = None
    path: str | None = None


class CrossAppAccessSubjectToken(Schema, frozen=True):
    source: CredentialLocation | None = None
    token_type: str | None = None


class CrossAppAccess(Schema, frozen=True):
    """``backendAuth.crossAppAccess``: Identity Assertion Authorization Grant (ID-JAG): the user's
    ID token exchanged at their identity provider for an ID-JAG, which the resource authorization
    server exchanges (JWT-bearer grant) for the backend's access token."""

    identity_provider: CrossAppAccessEndpoint
    resource_authorization_server: CrossAppAccessEndpoint
    audience: str
    resources: list[str] = []
    scopes: list[str] = []
    access_token_scopes: list[str] | None = None
    subject_token: CrossAppAccessSubjectToken | None = None
    cache: TokenCacheConfig | None = None


class AzureClientSecret(Schema, frozen=True):
    tenant_id: str = msgspec.field(name="tenant_id")
    client_id: str = msgspec.field(name="client_id")
    client_secret: Annotated[str, SECRET] = msgspec.field(name="client_secret")


class AzureUserAssignedIdentity(Schema, frozen=True):
    """Exactly one."""

    client_id: str | None = None
    object_id: str | None = None
    resource_id: str | None = None


class AzureManagedIdentity(Schema, frozen=True):
    user_assigned_identity: AzureUserAssignedIdentity | None = None


class AzureWorkloadIdentity(Schema, frozen=True):
    pass


class AzureExplicitConfig(Schema, frozen=True):
    """Exactly one."""

    client_secret: AzureClientSecret | None = None
    managed_identity: AzureManagedIdentity | None = None
    workload_identity: AzureWorkloadIdentity | None = None


class AzureImplicit(Schema, frozen=True):
    pass


class AzureAuth(Schema, frozen=True):
    """``backendAuth.azure``: exactly one of ``explicitConfig`` or ``implicit``."""

    explicit_config: AzureExplicitConfig | None = None
    implicit: AzureImplicit | None = None
    developer_implicit: NotSupported = UNSET


class BackendAuth(Schema, frozen=True):
    """``backendAuth``: credentials the gateway adds to the requests it sends a backend. Exactly one."""

    passthrough: Passthrough | None = None
    key: Annotated[str | BackendKey | None, SECRET] = None
    gcp: GcpAuth | None = None
    aws: AwsAuth | None = None
    azure: AzureAuth | None = None
    copilot: NotSupported = UNSET
    jwt_sign: JwtSign | None = None
    oauth_token_exchange: OAuthTokenExchange | None = None
    cross_app_access: CrossAppAccess | None = None
    credentials: NotSupported = UNSET


class BackendHttp(Schema, frozen=True):
    """``http``: how the gateway speaks HTTP to the backend. ``version`` "1.1" or "2" (also
    "HTTP/1.1", "HTTP/2"); unset: HTTP/1.1, and HTTP/2 for gRPC requests."""

    version: str | int | float | None = None
    request_timeout: NotSupported = UNSET


class BackendPolicies(Schema, frozen=True):
    """Policies that apply to the call to one backend."""

    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    backend_auth: Annotated[BackendAuth | None, COPILOT_AUTH] = None
    health: Health | None = None
    request_header_modifier: NotSupported = UNSET
    response_header_modifier: NotSupported = UNSET
    request_redirect: NotSupported = UNSET
    request_mirror: NotSupported = UNSET
    transformations: NotSupported = UNSET
    backend_tunnel: NotSupported = UNSET
    backend_http: NotSupported = UNSET
    backend_tcp: NotSupported = UNSET
    http: BackendHttp | None = None
    tcp: NotSupported = UNSET
    inference_routing: NotSupported = UNSET
    session_affinity: NotSupported = UNSET
    mcp_authorization: McpAuthorization | None = None
    mcp_authentication: NotSupported = UNSET
    mcp_guardrails: NotSupported = UNSET
    ext_mcp: NotSupported = UNSET
    a2a: NotSupported = UNSET
    ai: AiPolicy | None = None
    authorization: NotSupported = UNSET
    ext_authz: NotSupported = UNSET


# ---------------------------------------------------------------- LLM: ai backends, policies.ai, llm:


# a secret inline or read from a file (``apiKey: {file: path}``), trailing whitespace removed
Secret = str | FileRef


class AiModelProvider(Schema, frozen=True):
    """``anthropic`` (and ``openAI``/``gemini`` below): ``model`` overrides the request's model when set."""

    model: str | None = None
    moderation: NotSupported = UNSET


class AiOpenAiProvider(Schema, frozen=True):
    model: str | None = None
    moderation: NotSupported = UNSET


class AiGeminiProvider(Schema, frozen=True):
    model: str | None = None
    # addition: speak Gemini's own generateContent API instead of its OpenAI-compatible endpoint
    native_api: bool = False


class AiVertexProvider(Schema, frozen=True):
    project_id: str
    model: str | None = None
    region: str | None = None


class AiBedrockProvider(Schema, frozen=True):
    region: str
    model: str | None = None
    # a Bedrock guardrail applied to every Converse call (its guardrailConfig)
    guardrail_identifier: str | None = None
    guardrail_version: str | None = None


AzureResourceType = Literal["openAI", "foundry", "aiServices"]


class AiAzureProvider(Schema, frozen=True):
    """Azure: ``resourceType`` ``openAI`` → https://{resourceName}.openai.azure.com, ``foundry``
    (alias ``aiServices``) → https://{resourceName}.services.ai.azure.com; ``apiVersion`` ``v1``
    (default), ``preview``, or a dated version (the deployments API)."""

    model: str | None = None
    resource_name: str | None = None
    resource_type: AzureResourceType | None = None
    # quote a dated version in YAML ("2024-10-21"), or it reads as a date
    api_version: str | None = None
    project_name: str | None = None


ProviderFormatType = Literal[
    "completions",
    "messages",
    "responses",
    "embeddings",
    "anthropicTokenCount",
    "generateContent",
    "geminiCountTokens",
    "realtime",
    "rerank",
]


class AiProviderFormat(Schema, frozen=True):
    """One API a custom provider serves, at its default path (under the path prefix) or ``path``."""

    type: ProviderFormatType
    path: str | None = None


class AiCustomProvider(Schema, frozen=True):
    """``custom``: an endpoint that speaks the listed APIs (OpenAI-compatible, Anthropic-compatible)."""

    formats: list[AiProviderFormat]
    model: str | None = None
    provider_override: str | None = None


class AiProvider(Schema, frozen=True):
    """Exactly one provider kind."""

    open_ai: AiOpenAiProvider | None = msgspec.field(default=None, name="openAI")
    anthropic: AiModelProvider | None = None
    gemini: AiGeminiProvider | None = None
    vertex: AiVertexProvider | None = None
    bedrock: AiBedrockProvider | None = None
    azure: AiAzureProvider | None = None
    custom: AiCustomProvider | None = None
    copilot: NotSupported = UNSET


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


# one byte of agentgateway's Bytes list form
Byte = Annotated[int, msgspec.Meta(ge=0, le=255)]


class GuardRejection(Schema, frozen=True):
    status: int = 403
    # agentgateway's Bytes: a string, or a list of byte values
    body: str | list[Byte] | None = None
    headers: HeaderModifier | None = None


class WebhookTarget(Schema, frozen=True):
    host: str | None = None
    backend: NotSupported = UNSET
    service: NotSupported = UNSET


class WebhookGuardSpec(Schema, frozen=True):
    target: WebhookTarget
    # the client's headers that go along to the webhook
    forward_header_matches: list[HeaderMatch] = []
    # header name (or ``:path``, ``:method``) -> CEL over the client's request
    headers: dict[str, str] = {}
    failure_mode: Literal["failClosed", "failOpen"] = "failClosed"


class GuardPolicies(Schema, frozen=True):
    """The backend policies of a vendor guard's calls (agentgateway's SimpleLocalBackendPolicies)."""

    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    backend_auth: Annotated[BackendAuth | None, COPILOT_AUTH] = None
    request_header_modifier: NotSupported = UNSET
    transformations: NotSupported = UNSET
    http: NotSupported = UNSET
    tcp: NotSupported = UNSET
    backend_tunnel: NotSupported = UNSET


class OpenAiModerationGuard(Schema, frozen=True):
    """``openAIModeration``: OpenAI's moderation API (``POST /v1/moderations``)."""

    model: str | None = None
    policies: GuardPolicies | None = None
    # addition: where the API is (default https://api.openai.com)
    base_url: str | None = None


class BedrockGuardrailsGuard(Schema, frozen=True):
    """``bedrockGuardrails``: the Bedrock ApplyGuardrail API, signed with AWS SigV4."""

    guardrail_identifier: str
    guardrail_version: str
    region: str
    policies: GuardPolicies | None = None
    # addition: where the API is (default https://bedrock-runtime.<region>.amazonaws.com)
    base_url: str | None = None


class GoogleModelArmorGuard(Schema, frozen=True):
    """``googleModelArmor``: Model Armor's sanitizeUserPrompt / sanitizeModelResponse."""

    template_id: str
    project_id: str
    location: str | None = None
    policies: GuardPolicies | None = None
    # addition: where the API is (default https://modelarmor.<location>.rep.googleapis.com)
    base_url: str | None = None


class AnalyzeTextSpec(Schema, frozen=True):
    severity_threshold: int | None = None
    api_version: str | None = None
    blocklist_names: list[str] | None = None
    halt_on_blocklist_hit: bool | None = None


class DetectJailbreakSpec(Schema, frozen=True):
    api_version: str | None = None


class AzureContentSafetyGuard(Schema, frozen=True):
    """``azureContentSafety``: Azure AI Content Safety text:analyze and text:detectJailbreak."""

    # the resource host (``<name>.cognitiveservices.azure.com``); https
    endpoint: str
    policies: GuardPolicies | None = None
    analyze_text: AnalyzeTextSpec | None = None
    detect_jailbreak: DetectJailbreakSpec | None = None
    # addition: where the API is instead of https://<endpoint> (scheme, host, port)
    base_url: str | None = None


class PromptGuardRule(Schema, frozen=True):
    """One guard: exactly one of ``regex``, ``webhook``, ``openAIModeration``,
    ``bedrockGuardrails``, ``googleModelArmor`` or ``azureContentSafety``."""

    regex: RegexGuardSpec | None = None
    webhook: WebhookGuardSpec | None = None
    open_ai_moderation: OpenAiModerationGuard | None = msgspec.field(default=None, name="openAIModeration")
    bedrock_guardrails: BedrockGuardrailsGuard | None = None
    google_model_armor: GoogleModelArmorGuard | None = None
    azure_content_safety: AzureContentSafetyGuard | None = None
    rejection: GuardRejection | None = None
    scope: NotSupported = UNSET


class PromptGuard(Schema, frozen=True):
    request: list[PromptGuardRule] = []
    response: list[PromptGuardRule] = []
    # ``Disabled``: response guards do not apply to streamed answers; ``Enabled`` (and unset)
    # they do
    streaming: Literal["Disabled", "Enabled"] | None = None


class PromptMessage(Schema, frozen=True):
    role: str
    content: str


class PromptEnrichment(Schema, frozen=True):
    prepend: list[PromptMessage] = []
    append: list[PromptMessage] = []


class TokenReservation(Schema, frozen=True):
    """addition: what an LLM call reserves against token rate limits before it is made."""

    # tokens reserved for the answer of a request that sets no output limit of its own
    output_tokens: int = 1024


class PromptCaching(Schema, frozen=True):
    """``promptCaching``: cache markers added for providers that take them (Anthropic, Bedrock)."""

    cache_system: bool = True
    cache_messages: bool = True
    cache_tools: bool = False
    min_tokens: int | None = 1024
    cache_message_offset: int = 0


RouteType = Literal[
    "completions",
    "messages",
    "models",
    "passthrough",
    "detect",
    "responses",
    "embeddings",
    "realtime",
    "anthropicTokenCount",
    "generateContent",
    "geminiCountTokens",
    "rerank",
]
# agentgateway's earlier spelling of the route types (``Models``, ``AnthropicTokenCount``), which
# its published examples still use: read as the current one
RouteTypeCapitalized = Literal[
    "Completions",
    "Messages",
    "Models",
    "Passthrough",
    "Detect",
    "Responses",
    "Embeddings",
    "Realtime",
    "AnthropicTokenCount",
    "GenerateContent",
    "GeminiCountTokens",
    "Rerank",
]


class AiPolicy(Schema, frozen=True):
    """``policies.ai``: request shaping and guards for LLM traffic."""

    prompt_guard: PromptGuard | None = None
    defaults: dict[str, Any] = {}
    overrides: dict[str, Any] = {}
    # field → CEL: request body fields computed before (transformations) and after
    # (finalTransformations) the translation to the provider's format
    transformations: dict[str, str] = {}
    final_transformations: dict[str, str] = {}
    prompts: PromptEnrichment | None = None
    model_aliases: dict[str, str] = {}
    prompt_caching: PromptCaching | None = None
    # request path suffix → the API it is
    routes: dict[str, RouteType | RouteTypeCapitalized] = {}
    # addition: the reservation of token rate limits (llm/exchange.py)
    token_reservation: TokenReservation | None = None
    models: NotSupported = UNSET


# ---------------------------------------------------------------- security policies


class CredentialLocation(Schema, frozen=True):
    """Where a credential is read from: exactly one of the four."""

    header: HeaderLocation | None = None
    query_parameter: NamedLocation | None = None
    cookie: NamedLocation | None = None
    # CEL giving the credential (read only: nothing is removed from the request)
    expression: str | None = None


class JwksSource(Schema, frozen=True):
    """Exactly one: a file, a URL (fetched, cached, fetched again for an unknown ``kid``), or
    (addition) the key set written out in place (``keys: [...]``). A string is the JWKS as JSON."""

    file: str | None = None
    url: str | None = None
    keys: Annotated[list[dict[str, Any]] | None, JWKS] = None


class JwtValidationOptions(Schema, frozen=True):
    # claims that must be present: exp, nbf, aud, iss, sub (default [exp])
    required_claims: list[str] | None = None


class JwtProvider(Schema, frozen=True):
    issuer: str
    jwks: Annotated[JwksSource | str, JWKS]
    audiences: list[str] | None = None
    jwt_validation_options: JwtValidationOptions | None = None


class JwtAuth(Schema, frozen=True):
    """``jwtAuth``: one issuer (``issuer``, ``audiences``, ``jwks``) or several (``providers``)."""

    mode: Literal["strict", "optional", "permissive"] = "optional"
    issuer: str | None = None
    audiences: list[str] | None = None
    jwks: Annotated[JwksSource | str | None, JWKS] = None
    providers: list[JwtProvider] | None = None
    location: CredentialLocation | None = None
    jwt_validation_options: JwtValidationOptions | None = None


class IdentityProviderKind(Schema, frozen=True):
    """An empty map: the kind is its key."""


class McpIdentityProvider(Schema, frozen=True):
    """Exactly one (each an empty map): the identity provider behind ``mcpAuthentication``."""

    auth0: IdentityProviderKind | None = None
    keycloak: IdentityProviderKind | None = None
    okta: IdentityProviderKind | None = None
    descope: IdentityProviderKind | None = None
    authentik: IdentityProviderKind | None = None
    entra: IdentityProviderKind | None = None


class OidcSource(Schema, frozen=True):
    """Exactly one: a file, or a URL fetched when first needed."""

    file: str | None = None
    url: str | None = None


class OidcLogout(Schema, frozen=True):
    """addition (agentgateway's later ``oidc.logout``): a local path that ends the session."""

    path: str
    redirect: str | None = None


class Oidc(Schema, frozen=True):
    """``oidc``: browser login (authorization code with PKCE) and a session cookie."""

    issuer: str
    client_id: str
    client_secret: Annotated[str, SECRET]
    redirect_uri: str = msgspec.field(name="redirectURI")
    discovery: OidcSource | str | None = None
    authorization_endpoint: str | None = None
    token_endpoint: str | None = None
    token_endpoint_auth: Literal["clientSecretBasic", "clientSecretPost"] | None = None
    jwks: Annotated[JwksSource | str | None, JWKS] = None
    scopes: list[str] = []
    logout: OidcLogout | None = None  # addition


class Delay(Schema, frozen=True):
    """``delay``: latency injected before the backend is called (a duration, or CEL)."""

    duration: str


class McpAuthentication(Schema, frozen=True):
    """``mcpAuthentication``: the gateway as the OAuth resource server of an MCP endpoint."""

    issuer: str
    audiences: list[str]
    resource_metadata: dict[str, Any] = {}
    # default: <issuer>/.well-known/jwks.json
    jwks: Annotated[JwksSource | str | None, JWKS] = None
    mode: Literal["strict", "optional", "permissive"] = "strict"
    authorization_location: CredentialLocation | None = None
    jwt_validation_options: JwtValidationOptions | None = None
    # the identity provider's kind: how its metadata and default JWKS URL are found
    provider: McpIdentityProvider | None = None
    client_id: str | None = None
    client_secret: NotSupported = UNSET
    relay_signing_key: NotSupported = UNSET


class ApiKeyEntry(Schema, frozen=True):
    """One accepted key: exactly one of ``key`` and ``keyHash`` (``sha256:<hex>`` or bcrypt)."""

    key: Annotated[str | None, SECRET] = None
    key_hash: Annotated[str | None, SECRET] = None
    metadata: dict[str, Any] | None = None
    # the models this key may call through an LLM route (``*`` wildcards); unset: every model
    allowed_models: list[str] | None = None


class ApiKey(Schema, frozen=True):
    keys: list[ApiKeyEntry]
    mode: Literal["strict", "optional", "permissive"] = "optional"
    location: CredentialLocation | None = None


class HtpasswdFile(Schema, frozen=True):
    file: str


class BasicAuth(Schema, frozen=True):
    """``basicAuth``: ``htpasswd`` is the file's text, or ``{file: path}``."""

    htpasswd: Annotated[HtpasswdFile | str, SECRET]
    realm: str | None = None
    mode: Literal["strict", "optional"] = "optional"
    authorization_location: CredentialLocation | None = None


class Authorization(Schema, frozen=True):
    """``authorization``: CEL rules, each a string (allow) or ``{allow|deny|require: CEL}``."""

    rules: list[str | dict[str, str]] = []


class A2aPolicy(Schema, frozen=True):
    """``a2a: {}``: the route serves an A2A agent."""

    # addition: an event stream quiet for this long gets a comment line (0s: never); default 15s
    keep_alive_interval: str | None = None


class DirectResponse(Schema, frozen=True):
    status: int = 200
    # agentgateway's Bytes: a string, or a list of byte values
    body: str | list[Byte] | None = None
    body_expression: NotSupported = UNSET
    headers: NotSupported = UNSET
    conditional: NotSupported = UNSET


class RoutePolicies(Schema, frozen=True):
    """Route-level policies (the reference's FilterOrPolicy). Backend policies are accepted here too
    and apply to every backend of the route."""

    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    request_header_modifier: HeaderModifier | None = None
    response_header_modifier: HeaderModifier | None = None
    request_redirect: RequestRedirect | None = None
    url_rewrite: UrlRewrite | None = None
    request_mirror: RequestMirror | None = None
    direct_response: DirectResponse | None = None
    local_rate_limit: Annotated[list[LocalRateLimit] | None, CONDITIONAL] = None
    remote_rate_limit: Annotated[RemoteRateLimit | None, CONDITIONAL] = None
    transformations: Transformations | None = None
    timeout: Timeout | None = None
    retry: Retry | None = None
    health: Health | None = None
    jwt_auth: JwtAuth | None = None
    mcp_authentication: McpAuthentication | None = None
    basic_auth: BasicAuth | None = None
    api_key: ApiKey | None = None
    authorization: Authorization | None = None
    cors: Cors | None = None
    csrf: Csrf | None = None
    ext_authz: ExtAuthz | None = None
    backend_auth: Annotated[BackendAuth | None, COPILOT_AUTH] = None
    mcp_authorization: McpAuthorization | None = None
    mcp_guardrails: NotSupported = UNSET
    ext_mcp: NotSupported = UNSET
    a2a: A2aPolicy | None = None
    ai: AiPolicy | None = None
    backend_tunnel: NotSupported = UNSET
    oidc: Oidc | None = None
    ext_proc: NotSupported = UNSET
    buffer: NotSupported = UNSET
    delay: Annotated[Delay | None, CONDITIONAL] = None
    host_rewrite: Literal["auto", "none"] | None = None
    http: BackendHttp | None = None
    tcp: NotSupported = UNSET
    # (``llm.policies`` only: guardrails for every model of the shortcut)
    guardrails: NotSupported = UNSET


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
    env: Annotated[dict[str, str], SECRET] = {}
    # agentgateway spells this one in snake case
    clear_env: bool = msgspec.field(default=False, name="clear_env")


class OpenApiSchemaSource(Schema, frozen=True):
    """Exactly one: a file path, the document inline (YAML/JSON text or a mapping), or a URL."""

    file: str | None = None
    inline: Any = None
    url: str | None = None


class McpOpenApi(McpHost, frozen=True):
    """A REST API described by an OpenAPI 3 document, served as MCP tools (``schema`` is required)."""

    schema: Annotated[OpenApiSchemaSource | None, RefusedForms("the OpenAPI document as a string", strings=True)] = None


class McpTargetPolicies(Schema, frozen=True):
    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    backend_auth: Annotated[BackendAuth | None, COPILOT_AUTH] = None
    mcp_authorization: McpAuthorization | None = None
    ext_mcp: NotSupported = UNSET
    request_header_modifier: NotSupported = UNSET
    transformations: NotSupported = UNSET
    http: NotSupported = UNSET
    tcp: NotSupported = UNSET
    backend_tunnel: NotSupported = UNSET


class McpTarget(Schema, frozen=True):
    """One upstream MCP server: exactly one of ``stdio``, ``mcp`` (streamable HTTP) or ``sse``."""

    name: str
    stdio: McpStdio | None = None
    mcp: McpHost | None = None
    sse: McpHost | None = None
    openapi: McpOpenApi | None = None
    policies: McpTargetPolicies | None = None


class ToolPinning(Schema, frozen=True):
    """(addition) Tool pinning against tool poisoning: each upstream tool's definition is recorded
    by hash (from ``pins``, or at first sight when ``learn``), and a tool whose definition changed
    is hidden (``mode: hide``) or listed with a warning (``mode: flag``). ``pins`` maps
    ``<target>_<tool>`` to ``sha256:<hex>``; ``store`` is a file that keeps learned pins across
    restarts (without it they last as long as the gateway runs)."""

    mode: Literal["hide", "flag"] = "hide"
    pins: dict[str, str] = {}
    learn: bool = True
    store: str | None = None


class McpBackend(Schema, frozen=True):
    targets: list[McpTarget]
    stateful_mode: Literal["stateful", "stateless"] = "stateful"
    prefix_mode: Literal["always", "conditional", "never"] | None = None
    failure_mode: Literal["failClosed", "failOpen"] | None = None
    tool_pinning: ToolPinning | None = None  # addition
    # Unset (our default, agentgateway's is off): on for connections made to a loopback address.
    dns_rebinding_protection: bool | None = None


class RouteBackend(Schema, frozen=True):
    """One entry of ``routes[].backends``: exactly one of ``host``, ``backend`` (a named backend),
    ``service`` (a service of ``services``), ``mcp`` or ``ai``."""

    weight: int = 1
    policies: BackendPolicies | None = None
    host: str | None = None
    backend: str | None = None
    mcp: McpBackend | None = None
    ai: AiBackend | None = None
    # a service of the top-level ``services`` list, load-balanced over its workloads
    service: ServiceRef | None = None
    aws: NotSupported = UNSET
    dynamic: NotSupported = UNSET
    internal: NotSupported = UNSET
    route_group: NotSupported = UNSET
    invalid: NotSupported = UNSET


class Route(Schema, frozen=True):
    name: str | None = None
    namespace: str | None = None
    rule_name: str | None = None
    hostnames: list[str] = []
    matches: list[RouteMatch] = []
    policies: RoutePolicies | None = None
    backends: list[RouteBackend] = []


TlsVersion = Literal["TLS_V1_0", "TLS_V1_1", "TLS_V1_2", "TLS_V1_3"]


class TcpRoutePolicies(Schema, frozen=True):
    """A TCP route's policies (the reference's TCPFilterOrPolicy)."""

    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")


class TcpBackendPolicies(Schema, frozen=True):
    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    backend_tunnel: NotSupported = UNSET


class TcpRouteBackend(Schema, frozen=True):
    """One entry of ``tcpRoutes[].backends``: exactly one of ``host`` or ``backend`` (a named
    backend with a ``host``)."""

    weight: int = 1
    policies: TcpBackendPolicies | None = None
    host: str | None = None
    backend: str | None = None
    service: NotSupported = UNSET
    dynamic: NotSupported = UNSET


class TcpRoute(Schema, frozen=True):
    """A route of a TCP or TLS listener: chosen by the TLS server name (SNI) among
    ``hostnames``; the connection's bytes go to one of ``backends``."""

    name: str | None = None
    namespace: str | None = None
    rule_name: str | None = None
    hostnames: list[str] = []
    policies: TcpRoutePolicies | None = None
    backends: list[TcpRouteBackend] = []


class ListenerTls(Schema, frozen=True):
    # required (agentgateway makes them optional only for ``spiffe``, not supported here)
    cert: str | None = None
    key: Annotated[str | None, KEY_MATERIAL] = None
    # ``static`` (the certificate is the listener's) or ``dynamicCa`` (refused by name)
    mode: Literal["static", "dynamicCa"] | None = None
    min_tls_version: TlsVersion | None = msgspec.field(default=None, name="minTLSVersion")
    max_tls_version: TlsVersion | None = msgspec.field(default=None, name="maxTLSVersion")
    # agentgateway's other spellings of the two (one of each pair at most)
    min_tls_version_lower: TlsVersion | None = msgspec.field(default=None, name="minTlsVersion")
    max_tls_version_lower: TlsVersion | None = msgspec.field(default=None, name="maxTlsVersion")
    # CA certificates that client certificates must chain to: clients must present one (mTLS)
    root: str | None = None
    spiffe: NotSupported = UNSET
    cipher_suites: NotSupported = UNSET
    key_exchange_groups: NotSupported = UNSET


class Listener(Schema, frozen=True):
    name: str | None = None
    namespace: str | None = None
    hostname: str | None = None
    protocol: Literal["HTTP", "HTTPS", "TLS", "TCP", "HBONE"] = "HTTP"
    tls: ListenerTls | None = None
    routes: list[Route] = []
    tcp_routes: list[TcpRoute] | None = None
    # gateway-phase policies: they apply to every route of the listener
    policies: GatewayPolicies | None = None
    gateway_name: NotSupported = UNSET


class Bind(Schema, frozen=True):
    # required here: agentgateway omits it only for internal binds (mode: internal, refused)
    port: int | None = None
    listeners: list[Listener] = []
    # ``standard`` (the default: the port is bound) and ``direct`` (no tunnel) are what this
    # gateway does; the other values are refused by name
    mode: Literal["standard", "internal"] | None = None
    tunnel_protocol: Literal["direct", "hboneWaypoint", "hboneGateway", "proxy", "connect"] | None = None


class NamedBackend(Schema, frozen=True):
    """A top-level ``backends[]`` entry that routes refer to by name."""

    name: str
    host: str | None = None
    policies: BackendPolicies | None = None
    mcp: McpBackend | None = None
    ai: AiBackend | None = None
    aws: NotSupported = UNSET
    internal: NotSupported = UNSET


class GatewayPolicies(Schema, frozen=True):
    """``binds[].listeners[].policies``: the gateway-phase policies of a listener (the same keys
    a ``gateways`` entry takes beside its port), applied to every route of the listener."""

    jwt_auth: JwtAuth | None = None
    basic_auth: BasicAuth | None = None
    api_key: ApiKey | None = None
    authorization: Authorization | None = None
    oidc: Oidc | None = None
    ext_authz: ExtAuthz | None = None
    ext_proc: NotSupported = UNSET
    cors: Cors | None = None
    transformations: Transformations | None = None


class GatewayListener(Schema, frozen=True):
    """One listener of a ``gateways`` entry (new-style config)."""

    name: str | None = None
    hostname: str | None = None
    protocol: Literal["HTTP", "HTTPS", "TCP", "TLS"] | None = None
    tls: ListenerTls | None = None
    # gateway-phase policies: apply to every route of the listener (a route's own jwtAuth,
    # basicAuth or apiKey replaces the gateway's; authorization rules of both apply)
    jwt_auth: JwtAuth | None = None
    basic_auth: BasicAuth | None = None
    api_key: ApiKey | None = None
    authorization: Authorization | None = None
    oidc: Oidc | None = None
    ext_authz: ExtAuthz | None = None
    ext_proc: NotSupported = UNSET
    cors: Cors | None = None
    transformations: Transformations | None = None


class Gateway(GatewayListener, frozen=True):
    """A ``gateways`` entry: a port with one listener (the gateway itself) or named listeners."""

    port: int | None = None
    listeners: list[GatewayListener] = []
    bind_address: NotSupported = UNSET


class AttachedRoute(Route, frozen=True):
    """A top-level ``routes`` entry: a route plus the gateways (``name`` or ``name/listener``) it
    serves; without them it attaches to the gateway named ``default``."""

    gateways: str | list[str] | None = None


class AttachedTcpRoute(TcpRoute, frozen=True):
    """A top-level ``tcpRoutes`` entry: a TCP route plus the TCP/TLS gateways (``name`` or
    ``name/listener``) it serves; without them it attaches to the gateway named ``default``."""

    gateways: str | list[str] | None = None


class McpShortcut(McpBackend, frozen=True):
    """The ``mcp:`` shortcut: one MCP endpoint, on the gateways it names (``/mcp`` and ``/sse``
    there), else on ``gateways.default`` when there is one and no ``port`` is set, else on its own
    port (3000 by default)."""

    port: int | None = None
    policies: RoutePolicies | None = None
    # ``<gateway>`` or ``<gateway>/<listener>``, one or a list
    gateways: str | list[str] | None = None


class LlmParams(Schema, frozen=True):
    """``llm.models[].params`` (and ``llm.providers[].params``): how to reach the provider."""

    model: str | None = None
    api_key: Annotated[Secret | None, SECRET] = None
    base_url: str | None = None
    host_override: str | None = None
    path_override: str | None = None
    path_prefix: str | None = None
    tokenize: bool = False
    vertex_region: str | None = None
    vertex_project: str | None = None
    azure_resource_name: str | None = None
    azure_resource_type: AzureResourceType | None = None
    azure_api_version: str | None = None
    azure_project_name: str | None = None
    aws_region: str | None = None
    # addition: Gemini's own generateContent API instead of its OpenAI-compatible endpoint
    native_api: bool | None = None


class LlmProviderObject(Schema, frozen=True):
    """The object forms of ``provider``: ``{reference: <llm.providers[].name>}`` or ``{custom: ...}``."""

    reference: str | None = None
    custom: AiCustomProvider | None = None


# a built-in provider or preset name, or {reference} / {custom}
LlmProviderRef = str | LlmProviderObject


class LlmProviderDefaults(Schema, frozen=True):
    """``llm.providers[].defaults``: what the models of a provider get unless they set it."""

    defaults: dict[str, Any] | None = None
    overrides: dict[str, Any] | None = None
    transformation: dict[str, str] | None = None
    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    tls: BackendTls | None = None
    auth: BackendAuth | None = None
    prompt_caching: PromptCaching | None = None
    request_headers: HeaderModifier | None = None
    response_headers: HeaderModifier | None = None
    health: NotSupported = UNSET
    backend_tunnel: NotSupported = UNSET


class LlmProviderDef(Schema, frozen=True):
    """``llm.providers[]``: a provider models name with ``provider: {reference: <name>}``."""

    name: str
    provider: LlmProviderRef
    params: LlmParams | None = None
    defaults: LlmProviderDefaults | None = None


class LlmModel(Schema, frozen=True):
    name: str
    provider: LlmProviderRef
    params: LlmParams | None = None
    id: str | None = None
    visibility: Literal["public", "internal"] = "public"
    passthrough: Literal["detect", "opaque"] | None = None
    authorization: Authorization | None = None
    defaults: dict[str, Any] | None = None
    overrides: dict[str, Any] | None = None
    transformation: dict[str, str] | None = None
    final_transformation: dict[str, str] | None = None
    backend_tls: BackendTls | None = msgspec.field(default=None, name="backendTLS")
    tls: BackendTls | None = None
    auth: BackendAuth | None = None
    prompt_caching: PromptCaching | None = None
    guardrails: NotSupported = UNSET
    matches: NotSupported = UNSET
    health: NotSupported = UNSET
    # headers of the requests to the model's provider, and of the answers from it
    response_headers: HeaderModifier | None = None
    request_headers: HeaderModifier | None = None
    backend_tunnel: NotSupported = UNSET


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
    """The ``llm:`` shortcut: an OpenAI- and Anthropic-compatible endpoint, on the gateways it
    names, else on ``gateways.default`` when there is one and neither ``port`` nor ``tls`` is set,
    else on its own port (4000 by default; HTTPS with ``tls``)."""

    port: int | None = None
    models: list[LlmModel] = []
    virtual_models: list[VirtualModel] = []
    policies: RoutePolicies | None = None
    providers: list[LlmProviderDef] = []
    # ``<gateway>`` or ``<gateway>/<listener>``, one or a list
    gateways: str | list[str] | None = None
    tls: ListenerTls | None = None
    guardrails: NotSupported = UNSET


# ---------------------------------------------------------------- services and workloads
#
# agentgateway's static form of the service/workload model a control plane sends: a service is a
# hostname with ports, a workload an address that claims membership of services. A route backend
# ``service: {name: <namespace>/<hostname>, port}`` is load-balanced over the service's workloads.


class ServiceRef(Schema, frozen=True):
    # ``<namespace>/<hostname>`` of a ``services`` entry
    name: str
    port: int


class ServiceLoadBalancer(Schema, frozen=True):
    # ``OnlyHealthy`` (the default): workloads whose status is Unhealthy are left out
    health_policy: Literal["OnlyHealthy", "AllowAll"] | None = None
    routing_preferences: NotSupported = UNSET
    mode: NotSupported = UNSET


class LocalService(Schema, frozen=True):
    name: str
    namespace: str
    hostname: str
    # the addresses the service answers on where traffic is captured (a mesh); nothing is
    # captured here, so they name the service and route nothing
    vips: list[str]
    # service port -> workload port (0: the workload's own mapping must give it); a port may be
    # written as a number or a string, as YAML keys often are
    ports: dict[int | str, int]
    # ``Http11`` is what this gateway speaks to upstreams; the others are refused by name
    app_protocols: dict[int | str, Literal["Http11", "Http2", "Grpc"]] = {}
    load_balancer: ServiceLoadBalancer | None = None
    subject_alt_names: NotSupported = UNSET
    waypoint: NotSupported = UNSET
    ip_families: NotSupported = UNSET


class LocalWorkload(Schema, frozen=True):
    # the first address is connected to (as agentgateway)
    workload_ips: list[str]
    namespace: str
    # ``<namespace>/<hostname>`` of each service the workload serves -> {service port: its port}
    services: dict[str, dict[int | str, int]]
    name: str | None = None
    uid: str | None = None
    status: Literal["Healthy", "Unhealthy"] | None = None
    # ``TCP`` (plain connections) and ``Standard`` are what this gateway does; the others are
    # refused by name
    protocol: Literal["TCP", "HBONE", "LegacyIstioMtls"] | None = None
    network_mode: Literal["Standard", "HostNetwork"] | None = None
    waypoint: NotSupported = UNSET
    network_gateway: NotSupported = UNSET
    trust_domain: NotSupported = UNSET
    service_account: NotSupported = UNSET
    network: NotSupported = UNSET
    workload_name: NotSupported = UNSET
    workload_type: NotSupported = UNSET
    canonical_name: NotSupported = UNSET
    canonical_revision: NotSupported = UNSET
    hostname: NotSupported = UNSET
    node: NotSupported = UNSET
    authorization_policies: NotSupported = UNSET
    cluster_id: NotSupported = UNSET
    locality: NotSupported = UNSET
    capacity: NotSupported = UNSET


class LocalConfig(Schema, frozen=True):
    config: RawConfig | None = None
    binds: list[Bind] = []
    frontend_policies: FrontendPolicies | None = None
    backends: list[NamedBackend] = []
    gateways: dict[str, Gateway] = {}
    routes: list[AttachedRoute] = []
    tcp_routes: list[AttachedTcpRoute] = []
    policies: NotSupported = UNSET
    workloads: list[LocalWorkload] = []
    services: list[LocalService] = []
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


@functools.cache
def _field_names(cls: type[Schema]) -> tuple[tuple[str, str], ...]:
    """(attribute, key in the file) of every field of ``cls`` (``msgspec.structs.fields``
    resolves the class's annotations on every call: ~0.3 ms, once per struct of every load)."""
    return tuple((f.name, f.encode_name) for f in msgspec.structs.fields(cls))


def find_unsupported(node: object, path: str = "") -> str | None:
    """Path of the first key present in the file that this gateway does not implement yet."""
    if isinstance(node, Schema):
        cls = type(node)
        for attr, key in _unsupported_fields(cls):
            if getattr(node, attr) is not UNSET:
                return f"{path}.{key}" if path else key
        for attr, key in _field_names(cls):
            child = getattr(node, attr)
            if isinstance(child, Schema | list | dict):
                found = find_unsupported(child, f"{path}.{key}" if path else key)
                if found:
                    return found
    elif isinstance(node, dict):
        for key, item in node.items():
            found = find_unsupported(item, f"{path}.{key}")
            if found:
                return found
    elif isinstance(node, list):
        for i, item in enumerate(node):
            found = find_unsupported(item, f"{path}[{i}]")
            if found:
                return found
    return None


# ---------------------------------------------------------------- refused value forms


@functools.cache
def _field_table(cls: type[Schema]) -> dict[str, tuple[Any, RefusedForms | None]]:
    """key in the file -> (type hint without Annotated, its RefusedForms marker)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    out: dict[str, tuple[Any, RefusedForms | None]] = {}
    for f in msgspec.structs.fields(cls):
        hint = hints[f.name]
        marker = None
        if typing.get_origin(hint) is Annotated:
            marker = next((m for m in hint.__metadata__ if isinstance(m, RefusedForms)), None)
            hint = typing.get_args(hint)[0]
        out[f.encode_name] = (hint, marker)
    return out


def _inner(hint: Any, value: object) -> Any:
    """The part of ``hint`` (a union, list or dict type) that a raw ``value`` decodes into."""
    origin = typing.get_origin(hint)
    if origin is Annotated:
        return _inner(typing.get_args(hint)[0], value)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            inner = _inner(arg, value)
            if inner is not None:
                return inner
        return None
    if isinstance(value, dict):
        if isinstance(hint, type) and issubclass(hint, Schema):
            return hint
        return hint if origin is dict else None
    if isinstance(value, list):
        return hint if origin is list else None
    return None


def find_refused_form(value: object, hint: Any, path: str = "") -> tuple[str, str] | None:
    """(path, reason) of the first value of the raw file (before decoding) that is a form
    agentgateway accepts and this gateway refuses (fields marked with RefusedForms)."""
    target = _inner(hint, value)
    if target is None:
        return None
    if isinstance(target, type) and issubclass(target, Schema):
        assert isinstance(value, dict)
        table = _field_table(target)
        for key, item in value.items():
            entry = table.get(key) if isinstance(key, str) else None
            if entry is None:
                continue
            sub, marker = entry
            where = f"{path}.{key}" if path else key
            if marker is not None:
                refused = marker.refusal(item, where)
                if refused is not None:
                    return refused
            found = find_refused_form(item, sub, where)
            if found is not None:
                return found
        return None
    args = typing.get_args(target)
    if isinstance(value, list) and args:
        for i, item in enumerate(value):
            found = find_refused_form(item, args[0], f"{path}[{i}]")
            if found is not None:
                return found
    elif isinstance(value, dict) and len(args) == 2:
        for key, item in value.items():
            found = find_refused_form(item, args[1], f"{path}.{key}")
            if found is not None:
                return found
    return None
