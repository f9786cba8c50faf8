"""Decoded config → runtime IR. Every semantic check happens here, before anything serves."""

from __future__ import annotations

import ipaddress
import math
import os
import re
import ssl
from pathlib import Path

from agentgateway._native import Pattern
from agentgateway.a2a.policy import A2aPolicy
from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.ir import BindRuntime, HealthState, ListenerRuntime, RuntimeConfig
from agentgateway.config.observability import compile_access_log, compile_metrics, compile_tracing
from agentgateway.config.schema import (
    AiPolicy,
    BackendHttp,
    BackendPolicies,
    BackendTls,
    FrontendHttp,
    GatewayListener,
    GatewayPolicies,
    ListenerTls,
    LlmShortcut,
    LocalConfig,
    McpAuthorization,
    McpShortcut,
    NamedBackend,
    RawConfig,
    Route,
    RouteMatch,
    RoutePolicies,
    TcpRoute,
    ValueMatch,
)
from agentgateway.config.schema import BackendAuth as BackendAuthConfig
from agentgateway.config.schema import ExtAuthz as ExtAuthzConfig
from agentgateway.config.settings import (
    IPNetwork,
    McpSessionSettings,
    ProxyProtocolSettings,
    ServerLimits,
    StaticSettings,
)
from agentgateway.config.tlsfiles import load_cert_chain, load_roots, read_pem
from agentgateway.core.http2 import DEFAULT_WINDOW, MAX_FRAME_SIZE, MAX_WINDOW_SIZE, MIN_FRAME_SIZE
from agentgateway.core.request import PathError, normalize_path
from agentgateway.llm.accounting import LlmHooks
from agentgateway.llm.budgets import LocalTokenBudget, RemoteTokenBudget, caller_of
from agentgateway.llm.config import LlmPolicy, LlmService, compile_ai_backend, compile_llm_shortcut, compile_policy
from agentgateway.mcp.config import McpService, compile_mcp_backend
from agentgateway.policy.api_key import ApiKeyPolicy
from agentgateway.policy.authorization import AuthorizationPolicy
from agentgateway.policy.basic_auth import BasicAuthPolicy
from agentgateway.policy.chain import EMPTY_CHAIN, Policy, PolicyChain
from agentgateway.policy.cors import Cors
from agentgateway.policy.csrf import Csrf
from agentgateway.policy.delay import DelayPolicy
from agentgateway.policy.direct_response import DirectResponse
from agentgateway.policy.expression import compile_value
from agentgateway.policy.ext_authz import ExtAuthz
from agentgateway.policy.header_modifier import RequestHeaderModifier, ResponseHeaderModifier
from agentgateway.policy.health import EndpointHealth, HealthPolicy
from agentgateway.policy.local_rate_limit import LocalRateLimit
from agentgateway.policy.remote_rate_limit import RemoteRateLimit
from agentgateway.policy.request_mirror import RequestMirror
from agentgateway.policy.request_redirect import RequestRedirect
from agentgateway.policy.retry import RetryPolicy
from agentgateway.policy.timeout import TimeoutPolicy
from agentgateway.policy.transformations import Transformations
from agentgateway.policy.url_rewrite import HostRewrite, UrlRewrite
from agentgateway.routing.hostnames import pattern_key, validate_hostname_pattern
from agentgateway.routing.route import Backend, CompiledRoute
from agentgateway.routing.services import ServiceTable
from agentgateway.routing.table import (
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    ListenerSet,
    RouteRule,
    RouteTable,
    ValueMatcher,
    compile_regex,
)
from agentgateway.routing.tcp import CompiledTcpRoute, TcpRouteTable
from agentgateway.upstream.backend_auth import SigningBuffer, compile_backend_auth
from agentgateway.upstream.balance import WeightedChoice
from agentgateway.upstream.target import (
    HTTP_1,
    HTTP_2,
    HTTP_AUTO,
    HttpTarget,
    UpstreamTls,
    split_host_port,
    system_roots_context,
)

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TLS_VERSIONS = {
    "TLS_V1_2": ssl.TLSVersion.TLSv1_2,
    "TLS_V1_3": ssl.TLSVersion.TLSv1_3,
}


def _duration(value: str | None, default: float, where: str) -> float:
    if value is None:
        return default
    try:
        return parse_duration(value)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None


def _positive(value: str | None, default: float, where: str) -> float:
    seconds = _duration(value, default, where)
    if seconds <= 0:
        raise ConfigError(where, "must be positive")
    return seconds


def _networks(values: list[str], where: str) -> tuple[IPNetwork, ...]:
    """IP addresses and CIDRs (``10.0.0.0/8``, ``::1``) as networks."""
    networks = []
    for k, text in enumerate(values):
        try:
            networks.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ConfigError(f"{where}[{k}]", f"{text!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _address(value: str | bool | None, default: str, where: str) -> tuple[str, int] | None:
    if value is False:
        return None
    if value is True:
        raise ConfigError(where, "expected ip:port or off")
    text = default if value is None else value
    if text == "off":
        return None
    if text.startswith("unix:"):
        raise ConfigError(where, "unix sockets are not supported yet; use ip:port or off")
    try:
        host, port = split_host_port(text)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None
    return ("127.0.0.1" if host == "localhost" else host), port


def default_workers() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def _worker_threads(value: int | str, where: str) -> int:
    """agentgateway's ``workerThreads`` (or ``WORKER_THREADS``): a count, or a percentage of the
    cores rounded up (at least 1)."""
    text = str(value).strip()
    if text.endswith("%"):
        try:
            percent = float(text[:-1])
        except ValueError:
            raise ConfigError(where, f"{value!r} is not a number or a percentage") from None
        if not 0 < percent <= 100:
            raise ConfigError(where, "a percentage must be above 0 and at most 100")
        return max(1, math.ceil(default_workers() * percent / 100))
    try:
        count = int(text)
    except ValueError:
        raise ConfigError(where, f"{value!r} is not a number or a percentage") from None
    if count < 1:
        raise ConfigError(where, "must be at least 1")
    return count


def _workers(raw: RawConfig | None) -> int:
    """Worker processes: ``config.workers`` (ours), else agentgateway's thread count
    (``WORKER_THREADS``, then ``config.workerThreads``), one process per thread, else one per core."""
    if raw is not None and raw.workers is not None:
        if raw.workers < 1:
            raise ConfigError("config.workers", "must be at least 1")
        return raw.workers
    env = os.environ.get("WORKER_THREADS")
    if env:
        return _worker_threads(env, "WORKER_THREADS")
    if raw is not None and raw.worker_threads is not None:
        return _worker_threads(raw.worker_threads, "config.workerThreads")
    return default_workers()


def compile_static(cfg: LocalConfig) -> StaticSettings:
    raw = cfg.config
    logging = raw.logging if raw else None
    backend = raw.backend if raw else None
    workers = _workers(raw)
    level = (logging.level if logging and logging.level else "info").lower()
    if level not in ("trace", "debug", "info", "warn", "warning", "error", "off"):
        raise ConfigError("config.logging.level", f"unknown level {level!r} (trace, debug, info, warn, error, off)")
    pool_max = backend.pool_max_size if backend else None
    if pool_max is not None and pool_max < 0:
        raise ConfigError("config.backend.poolMaxSize", "must not be negative")
    return StaticSettings(
        admin_addr=_address(raw.admin_addr if raw else None, "localhost:15000", "config.adminAddr"),
        stats_addr=_address(raw.stats_addr if raw else None, "0.0.0.0:15020", "config.statsAddr"),
        readiness_addr=_address(raw.readiness_addr if raw else None, "0.0.0.0:15021", "config.readinessAddr"),
        workers=workers,
        log_format=(logging.format if logging and logging.format else "text"),
        log_level="warn" if level == "warning" else level,
        connect_timeout=_duration(backend.connect_timeout if backend else None, 10.0, "config.backend.connectTimeout"),
        pool_idle_timeout=_duration(
            backend.pool_idle_timeout if backend else None, 90.0, "config.backend.poolIdleTimeout"
        ),
        pool_max_size=pool_max,
        termination_deadline=_duration(
            raw.connection_termination_deadline if raw else None, 10.0, "config.connectionTerminationDeadline"
        ),
        min_termination_deadline=_duration(
            raw.connection_min_termination_deadline if raw else None,
            0.0,
            "config.connectionMinTerminationDeadline",
        ),
        response_header_timeout=_positive(
            backend.response_header_timeout if backend else None, 300.0, "config.backend.responseHeaderTimeout"
        ),
    )


def compile_limits(cfg: LocalConfig) -> ServerLimits:
    fp = cfg.frontend_policies
    http = fp.http if fp else None
    tls = fp.tls if fp else None
    limits = ServerLimits()
    if http:
        where = "frontendPolicies.http"
        for attr, key in (
            ("max_header_size", "maxHeaderSize"),
            ("max_request_body_size", "maxRequestBodySize"),
            ("max_buffer_size", "maxBufferSize"),
            ("http1_max_headers", "http1MaxHeaders"),
        ):
            value = getattr(http, attr)
            if value is not None and value <= 0:
                raise ConfigError(f"{where}.{key}", "must be positive")
        if http.max_header_size is not None:
            limits.max_header_size = http.max_header_size
        if http.http1_max_headers is not None:
            limits.max_headers = http.http1_max_headers
        limits.max_request_body_size = http.max_request_body_size
        if http.max_buffer_size is not None:
            limits.max_buffer_size = http.max_buffer_size
        limits.header_read_timeout = _duration(
            http.header_read_timeout, limits.header_read_timeout, f"{where}.headerReadTimeout"
        )
        limits.idle_timeout = _duration(http.http1_idle_timeout, limits.idle_timeout, f"{where}.http1IdleTimeout")
        if http.max_connection_duration is not None:
            limits.max_connection_duration = _positive(
                http.max_connection_duration, 0.0, f"{where}.maxConnectionDuration"
            )
        limits.body_idle_timeout = _positive(
            http.request_body_idle_timeout, limits.body_idle_timeout, f"{where}.requestBodyIdleTimeout"
        )
        if http.request_body_min_rate is not None:
            if http.request_body_min_rate < 0:
                raise ConfigError(f"{where}.requestBodyMinRate", "must not be negative (0 turns the check off)")
            limits.body_min_rate = http.request_body_min_rate
        limits.body_min_rate_grace = _duration(
            http.request_body_min_rate_grace, limits.body_min_rate_grace, f"{where}.requestBodyMinRateGrace"
        )
        limits.decode_escaped_slashes = http.escaped_slashes == "decode"
        if http.trusted_proxies is not None:
            limits.trusted_proxies = _networks(http.trusted_proxies, f"{where}.trustedProxies")
        _http2_limits(http, limits, where)
    if tls:
        for key, version in (("minVersion", tls.min_version), ("maxVersion", tls.max_version)):
            # checked here even when no listener terminates TLS (applied in server_tls)
            if version in ("TLS_V1_0", "TLS_V1_1"):
                raise ConfigError(
                    f"frontendPolicies.tls.{key}", f"{version} is not supported (only TLS_V1_2 and TLS_V1_3)"
                )
        limits.tls_handshake_timeout = _duration(
            tls.handshake_timeout,
            limits.tls_handshake_timeout,
            "frontendPolicies.tls.handshakeTimeout",
        )
        if tls.alpn is not None:
            limits.alpn = _alpn(tls.alpn, "frontendPolicies.tls.alpn")
    if fp and (fp.proxy_protocol or fp.proxy):
        if fp.proxy_protocol and fp.proxy:
            raise ConfigError("frontendPolicies.proxy", "set proxyProtocol or proxy (the same policy), not both")
        pp = fp.proxy_protocol or fp.proxy
        assert pp is not None
        limits.proxy_protocol = ProxyProtocolSettings(
            allow_v1=pp.version != "v2", allow_v2=pp.version != "v1", strict=pp.mode == "strict"
        )
    tcp = fp.tcp if fp else None
    if tcp:
        limits.tunnel_idle_timeout = _positive(
            tcp.idle_timeout, limits.tunnel_idle_timeout, "frontendPolicies.tcp.idleTimeout"
        )
    if tcp and tcp.keepalives and tcp.keepalives.enabled:
        ka = tcp.keepalives
        where = "frontendPolicies.tcp.keepalives"
        if not 0 < ka.retries < 128:
            raise ConfigError(f"{where}.retries", "must be 1-127")
        idle = _positive(ka.time, 180.0, f"{where}.time")
        interval = _positive(ka.interval, 180.0, f"{where}.interval")
        # the kernel counts in whole seconds (at least 1)
        limits.keepalive = (max(1, round(idle)), max(1, round(interval)), ka.retries)
    return limits


def _http2_limits(http: FrontendHttp, limits: ServerLimits, where: str) -> None:
    """``frontendPolicies.http.http2*``, in the bounds RFC 9113 §6.5.2 sets."""
    if http.http2_window_size is not None:
        limits.http2_window_size = _in_range(http.http2_window_size, 1, MAX_WINDOW_SIZE, f"{where}.http2WindowSize")
    if http.http2_connection_window_size is not None:
        limits.http2_connection_window_size = _in_range(
            http.http2_connection_window_size, DEFAULT_WINDOW, MAX_WINDOW_SIZE, f"{where}.http2ConnectionWindowSize"
        )
    if http.http2_frame_size is not None:
        limits.http2_frame_size = _in_range(
            http.http2_frame_size, MIN_FRAME_SIZE, MAX_FRAME_SIZE, f"{where}.http2FrameSize"
        )
    if http.http2_max_header_size is not None:
        limits.http2_max_header_size = _in_range(
            http.http2_max_header_size, 1, 2**32 - 1, f"{where}.http2MaxHeaderSize"
        )
    if http.http2_max_concurrent_streams is not None:
        limits.http2_max_concurrent_streams = _in_range(
            http.http2_max_concurrent_streams, 1, 2**31 - 1, f"{where}.http2MaxConcurrentStreams"
        )
    if http.http2_keepalive_interval is not None:
        limits.http2_keepalive_interval = _positive(
            http.http2_keepalive_interval, 0.0, f"{where}.http2KeepaliveInterval"
        )
    limits.http2_keepalive_timeout = _positive(
        http.http2_keepalive_timeout, limits.http2_keepalive_timeout, f"{where}.http2KeepaliveTimeout"
    )


def _in_range(value: int, low: int, high: int, where: str) -> int:
    if not low <= value <= high:
        raise ConfigError(where, f"must be between {low} and {high}")
    return value


_KNOWN_ALPN = ("h2", "http/1.1")


def _alpn(values: list[str | list[int]], where: str) -> tuple[str, ...]:
    """ALPN protocol names, written as text or (the reference's form) as lists of bytes. Only
    the protocols this gateway serves may be offered."""
    names: list[str] = []
    for k, value in enumerate(values):
        if isinstance(value, str):
            name = value
        else:
            try:
                name = bytes(value).decode("ascii")
            except (ValueError, UnicodeDecodeError):
                raise ConfigError(f"{where}[{k}]", "is not a protocol name") from None
        if name not in _KNOWN_ALPN:
            raise ConfigError(f"{where}[{k}]", f"{name!r} is not served here (h2 or http/1.1)")
        if name in names:
            raise ConfigError(f"{where}[{k}]", f"{name!r} is listed twice")
        names.append(name)
    if not names:
        raise ConfigError(where, "offer at least one protocol (h2, http/1.1)")
    return tuple(names)


class _Compiler:
    def __init__(
        self,
        cfg: LocalConfig,
        static: StaticSettings,
        base_dir: Path | None,
        previous_health: HealthState | None,
    ) -> None:
        self.cfg = cfg
        self.static = static
        self.base_dir = base_dir
        self.named: dict[str, tuple[NamedBackend, int]] = {}
        self.services = ServiceTable([], [])
        self._client_tls: dict[tuple[object, ...], UpstreamTls] = {}
        self._ssl_contexts: dict[tuple[object, ...], ssl.SSLContext] = {}
        self.previous_health: HealthState = previous_health or {}
        self.limits = ServerLimits()
        self.health_state: HealthState = {}
        self._session_key: bytes | None | bool = False  # not read yet

    # ------------------------------------------------------------------ backends

    def client_tls(self, tls: BackendTls, host: str, where: str, alpn: str | None = "http/1.1") -> UpstreamTls:
        """Client TLS for one upstream host. ``alpn``: the protocol offered (None for a TCP
        route's backend: the gateway does not know what the relayed bytes speak).

        The SSL context is shared by every backend with the same settings, whatever its host
        name (given per connection): making one with the system's roots loads the whole CA store,
        ~25 ms of CPU, which a config of a hundred TLS backends paid a hundred times in each
        process at every load and reload. Contexts with the system's roots are made once per
        process (``system_roots_context``); ones with files (roots, a client certificate) once
        per load, which reads the files again. The fingerprint, which keys connection pools,
        still names the host name."""
        if (tls.cert is None) != (tls.key is None):
            raise ConfigError(where, "cert and key go together (client certificate for mTLS)")
        server_hostname = tls.hostname or host
        # As in agentgateway, ``insecureHost`` wins over ``insecure``: with both set the chain
        # is still verified (only the name is not), never nothing at all.
        skip_all = tls.insecure and not tls.insecure_host
        fingerprint = (tls.cert, tls.key, tls.root, server_hostname, skip_all, tls.insecure_host, alpn)
        cached = self._client_tls.get(fingerprint)
        if cached is not None:
            return cached
        settings = (tls.cert, tls.key, tls.root, skip_all, tls.insecure_host, alpn)
        ctx = self._ssl_contexts.get(settings)
        if ctx is None and not tls.root and not tls.cert:
            ctx = system_roots_context(alpn, not skip_all, not tls.insecure_host)
        if ctx is None:
            if tls.root:
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                load_roots(ctx, tls.root, self.base_dir, f"{where}.root")
            else:
                ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
            if skip_all:
                ctx.check_hostname = False
                ctx.verify_mode = ssl.CERT_NONE
            elif tls.insecure_host:
                ctx.check_hostname = False
            if tls.cert and tls.key:
                load_cert_chain(ctx, tls.cert, tls.key, self.base_dir, where)
            if alpn is not None:
                ctx.set_alpn_protocols([alpn])
            self._ssl_contexts[settings] = ctx
        out = UpstreamTls(ctx, server_hostname, fingerprint)
        self._client_tls[fingerprint] = out
        return out

    def make_target(self, host: str, port: int, tls: BackendTls | None, label: str, where: str) -> HttpTarget:
        upstream_tls = self.client_tls(tls, host, f"{where}.policies.backendTLS") if tls else None
        return HttpTarget(host, port, upstream_tls, label, self.static.connect_timeout)

    def http_version(self, target: HttpTarget, tls: BackendTls | None, http: tuple[BackendHttp, str] | None) -> None:
        """The backend's ``http.version``; for one that may speak HTTP/2 (set to "2", or unset:
        gRPC requests) over TLS, the context that offers h2 (ALPN)."""
        version = HTTP_AUTO
        if http is not None and http[0].version is not None:
            version = _http_version(http[0].version, f"{http[1]}.version")
        target.http_version = version
        if tls is not None and version != HTTP_1:
            target.tls_h2 = self.client_tls(tls, target.host, "policies.backendTLS", alpn="h2")

    def http_target(self, host_port: str, tls: BackendTls | None, label: str, where: str) -> HttpTarget:
        try:
            host, port = split_host_port(host_port)
        except ValueError as exc:
            raise ConfigError(f"{where}.host", str(exc)) from None
        return self.make_target(host, port, tls, label, where)

    def index_named_backends(self) -> None:
        for i, nb in enumerate(self.cfg.backends):
            where = f"backends[{i}]"
            if nb.name in self.named:
                raise ConfigError(f"{where}.name", f"duplicate backend name {nb.name!r}")
            if sum(x is not None for x in (nb.host, nb.mcp, nb.ai)) != 1:
                raise ConfigError(
                    where, "exactly one of host, mcp or ai must be set (the other kinds are not supported yet)"
                )
            if nb.mcp is None and nb.policies is not None and nb.policies.mcp_authorization is not None:
                raise ConfigError(f"{where}.policies.mcpAuthorization", "applies to MCP backends only")
            if nb.ai is None and nb.policies is not None and nb.policies.ai is not None:
                raise ConfigError(f"{where}.policies.ai", "applies to ai backends only")
            self.named[nb.name] = (nb, i)

    def route_backends(self, route: Route, where: str) -> WeightedChoice[Backend]:
        policies = route.policies
        route_tls = policies.backend_tls if policies else None
        route_health = policies.health if policies else None
        route_auth = (
            (policies.backend_auth, f"{where}.policies.backendAuth") if policies and policies.backend_auth else None
        )
        route_ai = policies.ai if policies else None
        items: list[tuple[Backend, int]] = []
        # service references: the endpoints of each and its weight, spread over them below
        groups: list[tuple[list[HttpTarget], int]] = []
        for j, rb in enumerate(route.backends):
            bwhere = f"{where}.backends[{j}]"
            if rb.weight < 0:
                raise ConfigError(f"{bwhere}.weight", "must not be negative")
            if sum(x is not None for x in (rb.host, rb.backend, rb.mcp, rb.ai, rb.service)) != 1:
                raise ConfigError(bwhere, "exactly one of host, backend, service, mcp or ai must be set")
            inline_tls = _tls_of(rb.policies)
            inline_health = rb.policies.health if rb.policies else None
            inline_auth = (
                (rb.policies.backend_auth, f"{bwhere}.policies.backendAuth")
                if rb.policies and rb.policies.backend_auth
                else None
            )
            inline_ai = rb.policies.ai if rb.policies else None
            if rb.ai is None and rb.backend is None and inline_ai is not None:
                raise ConfigError(f"{bwhere}.policies.ai", "applies to ai backends only")
            auth = inline_auth or route_auth
            target: Backend
            http: HttpTarget | None = None
            health, hwhere = None, ""
            http_tls: BackendTls | None = None
            # Precedence as backendTLS: backendRef inline > route > named backend.
            http_policy = _http_of(rb.policies, bwhere) or _http_of(policies, where)
            if rb.service is not None:
                health, hwhere = (
                    (inline_health, f"{bwhere}.policies.health")
                    if inline_health
                    else (route_health, f"{where}.policies.health")
                )
                group = []
                for ep in self.services.endpoints(rb.service.name, rb.service.port, f"{bwhere}.service"):
                    endpoint = self.make_target(ep.address, ep.port, inline_tls or route_tls, ep.name, bwhere)
                    if health is not None:
                        endpoint.health = self.endpoint_health(endpoint, HealthPolicy(health, hwhere))
                    if auth is not None:
                        endpoint.auth = compile_backend_auth(
                            auth[0],
                            auth[1],
                            endpoint.host,
                            self.base_dir,
                            resolve=self.token_endpoint,
                            compile_expression=compile_value,
                        )
                    self.http_version(endpoint, inline_tls or route_tls, http_policy)
                    group.append(endpoint)
                groups.append((group, rb.weight))
                continue
            if rb.host is not None:
                http_tls = inline_tls or route_tls
                target = http = self.http_target(rb.host, http_tls, rb.host, bwhere)
                health, hwhere = (
                    (inline_health, f"{bwhere}.policies.health")
                    if inline_health
                    else (route_health, f"{where}.policies.health")
                )
            elif rb.mcp is not None:
                authz = _mcp_authorization((policies, where), (rb.policies, bwhere))
                target = compile_mcp_backend(
                    rb.mcp, "mcp", f"{bwhere}.mcp", self.make_target, self.base_dir, authorization=authz
                )
                self.mcp_auth(target, auth)
            elif rb.ai is not None:
                policy = self.ai_policy(
                    inline_ai or route_ai, f"{bwhere}.policies.ai" if inline_ai else f"{where}.policies.ai"
                )
                label = rb.ai.name or "ai"
                target = compile_ai_backend(
                    rb.ai,
                    label,
                    f"{bwhere}.ai",
                    self.make_target,
                    policy,
                    auth[0] if auth else None,
                    inline_tls or route_tls,
                )
            else:
                assert rb.backend is not None
                found = self.named.get(rb.backend)
                if found is None:
                    raise ConfigError(f"{bwhere}.backend", f"no backend named {rb.backend!r} in backends[]")
                nb, k = found
                http_policy = http_policy or _http_of(nb.policies, f"backends[{k}]")
                named_auth = (
                    (nb.policies.backend_auth, f"backends[{k}].policies.backendAuth")
                    if nb.policies and nb.policies.backend_auth
                    else None
                )
                auth = auth or named_auth
                if nb.mcp is not None:
                    authz = _mcp_authorization(
                        (policies, where), (nb.policies, f"backends[{k}]"), (rb.policies, bwhere)
                    )
                    target = compile_mcp_backend(
                        nb.mcp, nb.name, f"backends[{k}].mcp", self.make_target, self.base_dir, authorization=authz
                    )
                    self.mcp_auth(target, auth)
                elif nb.ai is not None:
                    nb_ai = nb.policies.ai if nb.policies else None
                    policy = self.ai_policy(inline_ai or route_ai or nb_ai, f"{bwhere}.policies.ai")
                    target = compile_ai_backend(
                        nb.ai,
                        nb.name,
                        f"backends[{k}].ai",
                        self.make_target,
                        policy,
                        auth[0] if auth else None,
                        inline_tls or route_tls or _tls_of(nb.policies),
                    )
                else:
                    assert nb.host is not None
                    # Precedence as the reference: backend-level < route-level < backendRef inline.
                    http_tls = inline_tls or route_tls or _tls_of(nb.policies)
                    target = http = self.http_target(nb.host, http_tls, nb.name, f"backends[{k}]")
                    named_health = nb.policies.health if nb.policies else None
                    if inline_health:
                        health, hwhere = inline_health, f"{bwhere}.policies.health"
                    elif route_health:
                        health, hwhere = route_health, f"{where}.policies.health"
                    else:
                        health, hwhere = named_health, f"backends[{k}].policies.health"
            if http is not None and health is not None:
                http.health = self.endpoint_health(http, HealthPolicy(health, hwhere))
            if http is not None and auth is not None:
                http.auth = compile_backend_auth(
                    auth[0],
                    auth[1],
                    http.host,
                    self.base_dir,
                    resolve=self.token_endpoint,
                    compile_expression=compile_value,
                )
            if http is not None:
                self.http_version(http, http_tls, http_policy)
            elif (
                http_policy is not None
                and http_policy[0].version is not None
                and _http_version(http_policy[0].version, f"{http_policy[1]}.version") == HTTP_2
            ):
                # The gateway's own clients (MCP targets, LLM providers) speak HTTP/1.1.
                raise ConfigError(f"{http_policy[1]}.version", "HTTP/2 is for HTTP backends (host) only")
            items.append((target, rb.weight))
        if groups:
            # A service's weight is shared by its endpoints: every weight is scaled so that each
            # endpoint of a service with n of them gets weight/n exactly.
            scale = math.lcm(*(len(group) for group, _ in groups if group))
            items = [(t, w * scale) for t, w in items]
            items += [(t, w * scale // len(group)) for group, w in groups for t in group]
        kinds = {t.kind for t, _ in items} | ({"http"} if groups else set())
        if len(kinds) > 1:
            raise ConfigError(f"{where}.backends", "a route's backends are all of one kind: MCP, ai or HTTP")
        if kinds and "llm" not in kinds and route_ai is not None:
            # agentgateway would run its LLM processing on these backends; here only ai backends
            raise ConfigError(f"{where}.policies.ai", "not supported on routes without ai backends")
        if kinds and "mcp" not in kinds:
            for policies_of, pwhere in [
                (policies, where),
                *((rb.policies, f"{where}.backends[{j}]") for j, rb in enumerate(route.backends)),
            ]:
                if policies_of is not None and policies_of.mcp_authorization is not None:
                    raise ConfigError(f"{pwhere}.policies.mcpAuthorization", "applies to MCP backends only")
        return WeightedChoice(items)

    def mcp_auth(self, service: McpService, auth: tuple[BackendAuthConfig, str] | None) -> None:
        """A route's (or named backend's) backendAuth for the HTTP targets of an MCP backend that
        have none of their own."""
        if auth is None:
            return
        for spec in service.targets:
            if spec.http is not None and spec.http.auth is None:
                spec.http.auth = compile_backend_auth(auth[0], auth[1], spec.http.host, self.base_dir, mcp=True)

    def with_signing_buffer(self, chain: PolicyChain, backends: WeightedChoice[Backend]) -> PolicyChain:
        """Routes whose backend signs the body (backendAuth aws) read it whole first."""
        if not any(isinstance(t, HttpTarget) and t.auth is not None and t.auth.needs_body for t in backends.items):
            return chain
        policies: list[Policy] = []
        for p in (*chain.request, *chain.response):
            if all(p is not q for q in policies):
                policies.append(p)
        policies.append(SigningBuffer(self.limits.max_buffer_size))
        return PolicyChain(policies)

    def endpoint_health(self, target: HttpTarget, policy: HealthPolicy) -> EndpointHealth:
        """The health record of a backend under a policy, carried over from the previous config."""
        key = (*target.pool_key, policy.fingerprint)
        state = self.health_state.get(key) or self.previous_health.get(key)
        if state is None:
            state = EndpointHealth(policy)
        self.health_state[key] = state
        return state

    def simple_target(
        self, host: str | None, backend: str | None, where: str, tls: BackendTls | None = None
    ) -> HttpTarget:
        """A backend named inline (mirror, rate-limit or authorization service): ``host`` or a
        named backend; ``tls`` (the reference's inline ``policies.backendTLS``) wins."""
        if (host is None) == (backend is None):
            raise ConfigError(where, "exactly one of host or backend must be set")
        if host is not None:
            return self.http_target(host, tls, host, where)
        assert backend is not None
        found = self.named.get(backend)
        if found is None:
            raise ConfigError(f"{where}.backend", f"no backend named {backend!r} in backends[]")
        nb, k = found
        if nb.host is None:
            raise ConfigError(f"{where}.backend", f"backend {backend!r} is not a host backend")
        return self.http_target(nb.host, tls or _tls_of(nb.policies), nb.name, f"backends[{k}]")

    def token_endpoint(self, host: str | None, backend: str | None, tls: BackendTls | None, where: str) -> HttpTarget:
        """The target of a token endpoint backendAuth calls (``host`` or a named backend)."""
        return self.simple_target(host, backend, where, tls)

    def session_key(self) -> bytes | None:
        """``config.session.key`` (or SESSION_KEY), read once."""
        if self._session_key is False:
            self._session_key = compile_mcp_settings(self.cfg).key
        key = self._session_key
        assert not isinstance(key, bool)
        return key

    def ext_authz(self, cfg: ExtAuthzConfig, where: str, labels: tuple[str, str, str]) -> ExtAuthz:
        tls = None
        if cfg.policies is not None:
            for attr, name in (("backend_auth", "backendAuth"), ("health", "health")):
                if getattr(cfg.policies, attr) is not None:
                    raise ConfigError(
                        f"{where}.policies.{name}", "not supported on the authorization service (only backendTLS)"
                    )
            tls = cfg.policies.backend_tls
        target = self.simple_target(cfg.host, cfg.backend, where, tls)
        grpc_tls = None
        grpc = cfg.protocol is None or cfg.protocol.http is None
        if grpc and target.tls is not None:
            settings = tls or (_tls_of(self.named[cfg.backend][0].policies) if cfg.backend else None)
            assert settings is not None
            tw = f"{where}.policies.backendTLS"
            if settings.insecure or settings.insecure_host:
                raise ConfigError(tw, "gRPC to the authorization service always verifies its certificate")
            root = read_pem(settings.root, self.base_dir, f"{tw}.root").encode() if settings.root else None
            cert = read_pem(settings.cert, self.base_dir, f"{tw}.cert").encode() if settings.cert else None
            key = read_pem(settings.key, self.base_dir, f"{tw}.key").encode() if settings.key else None
            grpc_tls = (root, key, cert)
        return ExtAuthz(cfg, where, target, grpc_tls, labels)

    # ------------------------------------------------------------------ policies

    def route_policies(
        self,
        p: RoutePolicies | None,
        matches: list[RouteMatch],
        where: str,
        identity: str,
        labels: tuple[str, str, str],
        inherited: tuple[Policy, ...] = (),
    ) -> tuple[PolicyChain, TimeoutPolicy | None, RetryPolicy | None, RequestMirror | None]:
        """The chain of a route's policies and its upstream-call policies. ``inherited``: the
        gateway-level policies of its listener (a route's own authentication policy of a kind
        replaces the gateway's; authorization rules of both apply)."""
        if p is None:
            return (PolicyChain(inherited) if inherited else EMPTY_CHAIN), None, None, None
        pw = f"{where}.policies"
        chain: list[Policy] = self.security_policies(p, pw)
        own = {policy.kind for policy in chain}
        # a route's own cors or transformations replace the gateway's (one answer to a preflight)
        own |= {kind for kind, cfg in (("cors", p.cors), ("transformations", p.transformations)) if cfg is not None}
        chain += [
            policy for policy in inherited if policy.kind in ("authorization", "extAuthz") or policy.kind not in own
        ]
        if p.mcp_authentication is not None:
            # imported when used, as the other token policies (see security_policies)
            from agentgateway.policy.mcp_authentication import McpAuthenticationPolicy

            chain.append(McpAuthenticationPolicy(p.mcp_authentication, self.base_dir, f"{pw}.mcpAuthentication"))
        if p.cors is not None:
            chain.append(Cors(p.cors, f"{pw}.cors"))
        if p.csrf is not None:
            chain.append(Csrf(p.csrf, f"{pw}.csrf"))
        if p.ext_authz is not None:
            chain.append(self.ext_authz(p.ext_authz, f"{pw}.extAuthz", labels))
        if p.request_header_modifier is not None:
            chain.append(RequestHeaderModifier(p.request_header_modifier, f"{pw}.requestHeaderModifier"))
        if p.response_header_modifier is not None:
            chain.append(ResponseHeaderModifier(p.response_header_modifier, f"{pw}.responseHeaderModifier"))
        if p.host_rewrite == "none":
            chain.append(HostRewrite())
        if p.url_rewrite is not None:
            chain.append(UrlRewrite(p.url_rewrite, f"{pw}.urlRewrite", matches))
        if p.request_redirect is not None:
            chain.append(RequestRedirect(p.request_redirect, f"{pw}.requestRedirect", matches))
        if p.direct_response is not None:
            chain.append(DirectResponse(p.direct_response, f"{pw}.directResponse"))
        if p.delay is not None:
            chain.append(DelayPolicy(p.delay, f"{pw}.delay"))
        timeout = TimeoutPolicy(p.timeout, f"{pw}.timeout") if p.timeout is not None else None
        if p.a2a is not None:
            rewrite = p.url_rewrite.path if p.url_rewrite is not None else None
            chain.append(A2aPolicy(p.a2a, f"{pw}.a2a", rewrite.prefix if rewrite is not None else None, timeout))
        if p.transformations is not None:
            chain.append(Transformations(p.transformations, f"{pw}.transformations"))
        if p.local_rate_limit:
            chain.append(LocalRateLimit(p.local_rate_limit, f"{pw}.localRateLimit", identity, labels))
        if p.remote_rate_limit is not None:
            rrl = p.remote_rate_limit
            target = None
            if rrl.redis is None:
                target = self.simple_target(rrl.host, rrl.backend, f"{pw}.remoteRateLimit")
            elif rrl.host is not None or rrl.backend is not None:
                raise ConfigError(f"{pw}.remoteRateLimit", "redis replaces host/backend; set one of them")
            chain.append(RemoteRateLimit(rrl, f"{pw}.remoteRateLimit", target, labels))
        retry = RetryPolicy(p.retry, f"{pw}.retry") if p.retry is not None else None
        mirror = None
        if p.request_mirror is not None:
            mw = f"{pw}.requestMirror"
            ref = p.request_mirror.backend
            target = self.simple_target(ref.host, ref.backend, f"{mw}.backend")
            mirror = RequestMirror(target, p.request_mirror.percentage, mw)
        return PolicyChain(chain), timeout, retry, mirror

    def gateway_policies(
        self, p: GatewayListener | GatewayPolicies, where: str, labels: tuple[str, str, str]
    ) -> list[Policy]:
        """The gateway-level policies of a gateway or listener: its authentication and
        authorization; ``extAuthz`` (which runs besides a route's own, as agentgateway's gateway
        phase runs before its route phase); ``cors`` and ``transformations`` (a route's own
        replaces them)."""
        out = self.security_policies(p, where)
        if p.ext_authz is not None:
            out.append(self.ext_authz(p.ext_authz, f"{where}.extAuthz", labels))
        if p.cors is not None:
            out.append(Cors(p.cors, f"{where}.cors"))
        if p.transformations is not None:
            out.append(Transformations(p.transformations, f"{where}.transformations"))
        return out

    def security_policies(self, p: RoutePolicies | GatewayListener | GatewayPolicies, where: str) -> list[Policy]:
        """The authentication and authorization policies a route or a gateway sets."""
        out: list[Policy] = []
        # The token policies are imported when a config uses one: PyJWT and the cryptography it
        # loads cost every process ~30 ms at start, and most configs have none.
        if p.oidc is not None:
            from agentgateway.policy.oidc import OidcPolicy

            out.append(OidcPolicy(p.oidc, self.session_key(), where, self.base_dir, f"{where}.oidc"))
        if p.jwt_auth is not None:
            from agentgateway.policy.jwt_auth import JwtAuthPolicy

            out.append(JwtAuthPolicy(p.jwt_auth, self.base_dir, f"{where}.jwtAuth"))
        if p.basic_auth is not None:
            out.append(BasicAuthPolicy(p.basic_auth, self.base_dir, f"{where}.basicAuth"))
        if p.api_key is not None:
            out.append(ApiKeyPolicy(p.api_key, f"{where}.apiKey"))
        if p.authorization is not None:
            out.append(AuthorizationPolicy(p.authorization, f"{where}.authorization"))
        return out

    def mcp_shortcut_route(
        self, gateway: str, listener: str, inherited: tuple[Policy, ...] = ()
    ) -> tuple[CompiledRoute, list[bytes]]:
        """The ``mcp:`` shortcut's route on one listener, and the path prefixes it serves there:
        ``/mcp`` and ``/sse`` (and the OAuth discovery documents with ``mcpAuthentication``)."""
        shortcut = self.cfg.mcp
        assert shortcut is not None
        authz = _mcp_authorization((shortcut.policies, "mcp"))
        service = compile_mcp_backend(shortcut, "mcp", "mcp", self.make_target, self.base_dir, authorization=authz)
        if shortcut.policies is not None and shortcut.policies.a2a is not None:
            raise ConfigError("mcp.policies.a2a", "a2a needs HTTP backends (this is an MCP endpoint)")
        chain, timeout, retry, mirror = self.route_policies(
            shortcut.policies, [], "mcp", f"{gateway}/{listener}/mcp", (gateway, listener, "mcp"), inherited
        )
        if shortcut.policies is not None and shortcut.policies.backend_auth is not None:
            self.mcp_auth(service, (shortcut.policies.backend_auth, "mcp.policies.backendAuth"))
        route = CompiledRoute("mcp", gateway, listener, WeightedChoice([(service, 1)]), chain, timeout, retry, mirror)
        prefixes = [b"/mcp", b"/sse"]
        if shortcut.policies is not None and shortcut.policies.mcp_authentication is not None:
            # The OAuth discovery documents mcpAuthentication answers (RFC 9728, RFC 8414).
            prefixes += [b"/.well-known/oauth-protected-resource", b"/.well-known/oauth-authorization-server"]
        return route, prefixes

    def mcp_shortcut_bind(self, shortcut: McpShortcut, port: int) -> BindRuntime:
        """``mcp:`` on a port of its own: one listener whose only route serves every path (as
        agentgateway's)."""
        gateway = f"bind/{port}"
        route, _ = self.mcp_shortcut_route(gateway, "mcp")
        rules = [RouteRule(route, PATH_PREFIX, b"/", None, None, [], [], 0)]
        listener = ListenerRuntime("mcp", gateway, None, "HTTP", None, RouteTable({b"": rules}))
        return BindRuntime(port, False, ListenerSet({b"": listener}), listener)

    def ai_policy(self, ai: AiPolicy | None, where: str) -> LlmPolicy:
        return compile_policy(ai, where, self.make_target, self.base_dir)

    def llm_shortcut_route(
        self, gateway: str, listener: str, inherited: tuple[Policy, ...] = ()
    ) -> tuple[CompiledRoute, list[bytes]]:
        """The ``llm:`` shortcut's route on one listener: every path (the OpenAI and Anthropic
        APIs; a route of the file with a longer prefix wins)."""
        shortcut = self.cfg.llm
        assert shortcut is not None
        service = compile_llm_shortcut(shortcut, self.make_target, self.base_dir)
        policies = shortcut.policies
        if policies is not None:
            for attr, key in (("backend_tls", "backendTLS"), ("backend_auth", "backendAuth")):
                if getattr(policies, attr) is not None:
                    raise ConfigError(f"llm.policies.{key}", "set provider credentials and TLS on llm.models[].params")
            service.policy = self.ai_policy(policies.ai, "llm.policies.ai")
        self.check_llm_policies(policies, "llm")
        chain, timeout, _, _ = self.route_policies(
            policies, [], "llm", f"{gateway}/{listener}/llm", (gateway, listener, "llm"), inherited
        )
        backends = WeightedChoice[Backend]([(service, 1)])
        self.llm_hooks(chain, backends)
        return CompiledRoute("llm", gateway, listener, backends, chain, timeout), [b"/"]

    def llm_shortcut_bind(self, shortcut: LlmShortcut, port: int) -> BindRuntime:
        """``llm:`` on a port of its own (HTTPS with ``llm.tls``)."""
        gateway = f"bind/{port}"
        route, _ = self.llm_shortcut_route(gateway, "llm")
        rules = [RouteRule(route, PATH_PREFIX, b"/", None, None, [], [], 0)]
        ssl_ctx = self.server_tls(shortcut.tls, "llm.tls", ["http/1.1"]) if shortcut.tls is not None else None
        protocol = "HTTP" if ssl_ctx is None else "HTTPS"
        listener = ListenerRuntime("llm", gateway, None, protocol, ssl_ctx, RouteTable({b"": rules}))
        return BindRuntime(port, ssl_ctx is not None, ListenerSet({b"": listener}), listener)

    def share_client_certificate_requests(self, listeners: list[ListenerRuntime], roots: list[tuple[str, str]]) -> None:
        """HTTPS listeners of one port, when some ask for client certificates (``tls.root``) and
        others do not. The handshake starts on one context and SNI switches it to the listener's,
        but OpenSSL keeps the *first* context's certificate request (``SSL_set_SSL_CTX`` does not
        carry the verify mode), its session cache and its ticket key: a listener that is not the
        port's default would never ask for a certificate, and a session resumed from another
        listener skips the request. So on such a port every listener asks for a certificate
        without requiring one (``CERT_OPTIONAL``: each verifies it against its roots; those that
        have none trust the roots of the port's mTLS listeners, so a client that sends its
        certificate everywhere still connects), and a listener that requires one serves only
        connections that presented one (``ListenerRuntime.client_certs``, checked per request)."""
        if not roots or len(listeners) < 2:
            return
        for listener in listeners:
            ctx = listener.ssl_context
            if ctx is None:
                continue
            if not listener.client_certs:
                for root, where in roots:
                    load_roots(ctx, root, self.base_dir, where)
            ctx.verify_mode = ssl.CERT_OPTIONAL

    def server_tls(self, tls: ListenerTls, where: str, alpn: list[str] | None) -> ssl.SSLContext:
        """The TLS context of a listener (``tls`` of a listener, a gateway or ``llm``); ``alpn``:
        the protocols it offers (None: a TLS listener passing its bytes on offers none)."""
        if tls.cert is None or tls.key is None:
            raise ConfigError(where, "tls.cert and tls.key are required (spiffe is not supported)")
        if tls.mode == "dynamicCa":
            raise ConfigError(f"{where}.mode", "dynamicCa is not supported (use static certificates)")
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        load_cert_chain(ctx, tls.cert, tls.key, self.base_dir, where)
        if tls.root is not None:
            # as agentgateway: a client certificate chaining to these roots is required
            load_roots(ctx, tls.root, self.base_dir, f"{where}.root")
            ctx.verify_mode = ssl.CERT_REQUIRED
        fp = self.cfg.frontend_policies
        frontend = fp.tls if fp is not None else None
        for low, lower, key, attr, default, fkey in (
            (
                tls.min_tls_version,
                tls.min_tls_version_lower,
                "minTLSVersion",
                "minimum_version",
                frontend.min_version if frontend else None,
                "minVersion",
            ),
            (
                tls.max_tls_version,
                tls.max_tls_version_lower,
                "maxTLSVersion",
                "maximum_version",
                frontend.max_version if frontend else None,
                "maxVersion",
            ),
        ):
            if low is not None and lower is not None:
                raise ConfigError(f"{where}.{key}", f"set once ({key} or its other spelling)")
            version = low or lower
            vwhere = f"{where}.{key}"
            if version is None and default is not None:
                # frontendPolicies.tls.minVersion / maxVersion: every listener without its own
                version, vwhere = default, f"frontendPolicies.tls.{fkey}"
            if version in ("TLS_V1_0", "TLS_V1_1"):
                # as agentgateway: only TLS 1.2 and 1.3
                raise ConfigError(vwhere, f"{version} is not supported (only TLS_V1_2 and TLS_V1_3)")
            if version is not None:
                setattr(ctx, attr, _TLS_VERSIONS[version])
        if alpn:
            ctx.set_alpn_protocols(alpn)
        return ctx

    @staticmethod
    def check_llm_policies(p: RoutePolicies | None, where: str) -> None:
        """Route policies that have no meaning for an LLM route (the exchange calls providers
        itself, with failover in place of retries)."""
        if p is None:
            return
        for attr, key in (
            ("retry", "retry"),
            ("request_mirror", "requestMirror"),
            ("a2a", "a2a"),
            ("mcp_authentication", "mcpAuthentication"),
            ("mcp_authorization", "mcpAuthorization"),
        ):
            if getattr(p, attr) is not None:
                raise ConfigError(f"{where}.policies.{key}", "does not apply to LLM routes")

    @staticmethod
    def llm_hooks(chain: PolicyChain, backends: WeightedChoice[Backend]) -> None:
        """Plug the route's policies into its LLM services: the caller the authentication
        policies proved (and the models it may call), and the token limits (localRateLimit buckets,
        remoteRateLimit descriptors)."""
        local = tuple(LocalTokenBudget(p) for p in chain.request if isinstance(p, LocalRateLimit) and p.counts_tokens)
        remote = tuple(
            RemoteTokenBudget(p) for p in chain.request if isinstance(p, RemoteRateLimit) and p.counts_tokens
        )
        hooks = LlmHooks(identity=caller_of, budgets=(*local, *remote), admissions=remote)
        for service in backends.items:
            if isinstance(service, LlmService):
                service.hooks = hooks

    # ------------------------------------------------------------------ routes

    def route_rules(self, route: Route, compiled: CompiledRoute, where: str, order: int) -> list[RouteRule]:
        matches = route.matches or [RouteMatch()]
        return [self.rule(m, compiled, f"{where}.matches[{k}]", order) for k, m in enumerate(matches)]

    def rule(self, m: RouteMatch, route: CompiledRoute, where: str, order: int) -> RouteRule:
        kind, value, regex = PATH_PREFIX, b"/", None
        if isinstance(m.path, str):
            raise ConfigError(f"{where}.path", "'invalid' (a match that never holds) is not supported")
        if m.path is not None:
            set_fields = [
                (k, v)
                for k, v in (
                    ("exact", m.path.exact),
                    ("pathPrefix", m.path.path_prefix),
                    ("regex", m.path.regex),
                )
                if v is not None
            ]
            if len(set_fields) != 1:
                raise ConfigError(f"{where}.path", "exactly one of exact, pathPrefix or regex must be set")
            key, text = set_fields[0]
            if key == "regex":
                kind, value, regex = PATH_REGEX, text.encode(), _regex(text, f"{where}.path.regex")
            else:
                if not text.startswith("/"):
                    raise ConfigError(f"{where}.path.{key}", "a path starts with /")
                kind = PATH_EXACT if key == "exact" else PATH_PREFIX
                value = self.route_path(text, f"{where}.path.{key}")
        method = None
        if m.method is not None:
            if not _TOKEN.match(m.method):
                raise ConfigError(f"{where}.method", f"{m.method!r} is not an HTTP method")
            method = m.method.encode()
        headers = []
        for k, h in enumerate(m.headers):
            if not _TOKEN.match(h.name):
                raise ConfigError(f"{where}.headers[{k}].name", f"{h.name!r} is not a header name")
            headers.append(_value_matcher(h.name.lower().encode(), h.value, f"{where}.headers[{k}].value"))
        query = [_value_matcher(q.name.encode(), q.value, f"{where}.query[{k}].value") for k, q in enumerate(m.query)]
        return RouteRule(route, kind, value, regex, method, headers, query, order)

    def route_path(self, text: str, where: str) -> bytes:
        """A route's path normalized as request paths are (core/request.py), so ``/%61pi``
        in the file matches requests for ``/api``."""
        try:
            raw = text.encode("ascii")
        except UnicodeEncodeError:
            raise ConfigError(where, "percent-encode non-ASCII characters (requests never carry them raw)") from None
        try:
            return normalize_path(raw, self.limits.decode_escaped_slashes)
        except PathError as exc:
            raise ConfigError(where, f"no request can match it: {exc}") from None

    def compile(self, limits: ServerLimits) -> RuntimeConfig:
        self.limits = limits
        self.index_named_backends()
        self.services = compile_services(self.cfg)
        sources: dict[int, tuple[str, list[_ListenerSource]]] = {}
        for i, bind in enumerate(self.cfg.binds):
            bwhere = f"binds[{i}]"
            if bind.port is None:
                raise ConfigError(f"{bwhere}.port", "is required (a bind without a port is an internal bind)")
            if not 0 < bind.port < 65536:
                raise ConfigError(f"{bwhere}.port", "must be 1-65535")
            if bind.port in sources:
                raise ConfigError(f"{bwhere}.port", f"port {bind.port} is bound twice")
            if bind.mode == "internal":
                raise ConfigError(f"{bwhere}.mode", "internal binds (routing without a socket) are not supported")
            if bind.tunnel_protocol not in (None, "direct"):
                raise ConfigError(f"{bwhere}.tunnelProtocol", f"{bind.tunnel_protocol} is not supported (only direct)")
            listeners = []
            for j, ls in enumerate(bind.listeners):
                lwhere = f"{bwhere}.listeners[{j}]"
                name = ls.name or f"listener{j}"
                policies = (
                    self.gateway_policies(ls.policies, f"{lwhere}.policies", (f"bind/{bind.port}", name, ""))
                    if ls.policies
                    else []
                )
                source = _ListenerSource(
                    f"{ls.namespace}/{name}" if ls.namespace else name,
                    ls.hostname,
                    ls.protocol,
                    ls.tls,
                    lwhere,
                    [(route, f"{lwhere}.routes[{k}]") for k, route in enumerate(ls.routes)],
                    tuple(policies),
                )
                if ls.tcp_routes is not None:
                    if ls.protocol not in _STREAM_PROTOCOLS:
                        raise ConfigError(f"{lwhere}.tcpRoutes", "tcpRoutes need protocol TCP or TLS")
                    source.tcp_routes = [(r, f"{lwhere}.tcpRoutes[{k}]") for k, r in enumerate(ls.tcp_routes)]
                elif ls.protocol in _STREAM_PROTOCOLS:
                    raise ConfigError(f"{lwhere}.tcpRoutes", f"protocol {ls.protocol} requires tcpRoutes")
                listeners.append(source)
            sources[bind.port] = (bwhere, listeners)
        refs = self.gateway_sources(sources)
        own_ports = self.attach_shortcuts(refs)
        binds = {port: self.bind(port, listeners, where) for port, (where, listeners) in sources.items()}
        if self.cfg.mcp is not None and "mcp" in own_ports:
            port = own_ports["mcp"]
            if port in binds:
                raise ConfigError("mcp.port", f"port {port} is also a bind's port")
            binds[port] = self.mcp_shortcut_bind(self.cfg.mcp, port)
        if self.cfg.llm is not None and "llm" in own_ports:
            port = own_ports["llm"]
            if port in binds:
                raise ConfigError("llm.port", f"port {port} is also used by a bind or the mcp shortcut")
            binds[port] = self.llm_shortcut_bind(self.cfg.llm, port)
        return RuntimeConfig(self.cfg, binds, limits, self.static, self.health_state, compile_mcp_settings(self.cfg))

    def attach_shortcuts(self, refs: dict[str, list[_ListenerSource]]) -> dict[str, int]:
        """As agentgateway: the ``mcp:`` and ``llm:`` shortcuts serve on the gateways their
        ``gateways`` name; without it (and without ``port``, or ``tls`` for llm) on the gateway
        named ``default`` when there is one; else on a port of their own (3000, 4000 by default).
        Attached, their routes come after the routes of each listener (so a route of the file wins
        a tie) and run under the listener's gateway-level policies. Returns the own ports."""
        own: dict[str, int] = {}
        for key, shortcut, default_port in (("mcp", self.cfg.mcp, 3000), ("llm", self.cfg.llm, 4000)):
            if shortcut is None:
                continue
            tls = shortcut.tls if isinstance(shortcut, LlmShortcut) else None
            names = [shortcut.gateways] if isinstance(shortcut.gateways, str) else list(shortcut.gateways or [])
            if names and (shortcut.port is not None or tls is not None):
                what = "port or tls" if key == "llm" else "port"
                raise ConfigError(f"{key}.gateways", f"cannot be used with {key}.{what}")
            if not names and shortcut.port is None and tls is None and "default" in refs:
                names = ["default"]
            if not names:
                port = default_port if shortcut.port is None else shortcut.port
                if not 0 < port < 65536:
                    raise ConfigError(f"{key}.port", "must be 1-65535")
                own[key] = port
                continue
            for source in self.resolve_gateways(refs, names, f"{key}.gateways"):
                if source.protocol in _STREAM_PROTOCOLS:
                    raise ConfigError(
                        f"{key}.gateways",
                        f"{source.name} is a {source.protocol} listener; the {key} shortcut serves HTTP",
                    )
                source.shortcuts.append(key)
        if "mcp" in own and "llm" in own and own["mcp"] == own["llm"]:
            raise ConfigError(
                "llm.port", f"port {own['llm']} is also the mcp shortcut's (attach both to one gateway instead)"
            )
        return own

    @staticmethod
    def resolve_gateways(refs: dict[str, list[_ListenerSource]], names: list[str], where: str) -> list[_ListenerSource]:
        """The listeners ``names`` (``<gateway>`` or ``<gateway>/<listener>``) refer to."""
        attached: list[_ListenerSource] = []
        for g, ref in enumerate(names):
            found = refs.get(ref)
            if found is None:
                known = ", ".join(sorted(refs)) or "none"
                raise ConfigError(f"{where}[{g}]", f"no gateway or listener {ref!r} (known: {known})")
            attached += [ls for ls in found if ls not in attached]
        return attached

    def gateway_sources(
        self, sources: dict[int, tuple[str, list[_ListenerSource]]]
    ) -> dict[str, list[_ListenerSource]]:
        """The new-style form: ``gateways`` (a port each, one or more listeners) and top-level
        ``routes`` attached to them by name, compiled into the same IR as ``binds``. Returns the
        listeners by reference (``<gateway>`` and ``<gateway>/<listener>``)."""
        refs: dict[str, list[_ListenerSource]] = {}
        for name, gw in self.cfg.gateways.items():
            where = f"gateways.{name}"
            if gw.port is None:
                raise ConfigError(f"{where}.port", "is required")
            if not 0 < gw.port < 65536:
                raise ConfigError(f"{where}.port", "must be 1-65535")
            if gw.port in sources:
                raise ConfigError(f"{where}.port", f"port {gw.port} is also used by {sources[gw.port][0]}")
            listeners = []
            gateway_policies = self.gateway_policies(gw, where, (name, "", ""))
            if not gw.listeners:
                listeners.append(
                    _ListenerSource(
                        name,
                        gw.hostname,
                        _gateway_protocol(gw.protocol, gw.tls, where),
                        gw.tls,
                        where,
                        [],
                        tuple(gateway_policies),
                    )
                )
                refs[name] = listeners
            else:
                if gw.protocol is not None or gw.tls is not None or gw.hostname is not None:
                    raise ConfigError(where, "protocol, hostname and tls go on the listeners when listeners are set")
                for j, ls in enumerate(gw.listeners):
                    lwhere = f"{where}.listeners[{j}]"
                    lname = ls.name or f"listener{j}"
                    own = self.gateway_policies(ls, lwhere, (name, lname, ""))
                    kinds = {policy.kind for policy in own}
                    merged = own + [p for p in gateway_policies if p.kind == "authorization" or p.kind not in kinds]
                    source = _ListenerSource(
                        f"{name}/{lname}",
                        ls.hostname,
                        _gateway_protocol(ls.protocol, ls.tls, lwhere),
                        ls.tls,
                        lwhere,
                        [],
                        tuple(merged),
                    )
                    if source.name in refs:
                        raise ConfigError(f"{lwhere}.name", f"two listeners of gateway {name} are named {lname!r}")
                    refs[source.name] = [source]
                    listeners.append(source)
                refs[name] = list(listeners)
            sources[gw.port] = (where, listeners)
        for k, route in enumerate(self.cfg.routes):
            rwhere = f"routes[{k}]"
            names = route.gateways
            if names is None or names == []:
                if "default" not in self.cfg.gateways:
                    raise ConfigError(f"{rwhere}.gateways", "must be set (there is no gateway named default)")
                names = ["default"]
            elif isinstance(names, str):
                names = [names]
            for source in self.resolve_gateways(refs, names, f"{rwhere}.gateways"):
                if source.protocol in _STREAM_PROTOCOLS:
                    raise ConfigError(
                        f"{rwhere}.gateways",
                        f"{source.name} is a {source.protocol} listener: attach tcpRoutes to it, not routes",
                    )
                source.routes.append((route, rwhere))
        for k, tcp_route in enumerate(self.cfg.tcp_routes):
            rwhere = f"tcpRoutes[{k}]"
            names = tcp_route.gateways
            if names is None or names == []:
                if "default" not in self.cfg.gateways:
                    raise ConfigError(f"{rwhere}.gateways", "must be set (there is no gateway named default)")
                names = ["default"]
            elif isinstance(names, str):
                names = [names]
            for source in self.resolve_gateways(refs, names, f"{rwhere}.gateways"):
                if source.protocol not in _STREAM_PROTOCOLS:
                    raise ConfigError(
                        f"{rwhere}.gateways",
                        f"{source.name} is an {source.protocol} listener: tcpRoutes attach to TCP or TLS listeners",
                    )
                source.tcp_routes.append((tcp_route, rwhere))
        return refs

    def bind(self, port: int, listeners: list[_ListenerSource], where: str) -> BindRuntime:
        gateway = f"bind/{port}"
        by_host: dict[bytes, ListenerRuntime] = {}
        protocols: set[str] = set()
        terminated: set[str] = set()
        first: ListenerRuntime | None = None
        mtls_roots: list[tuple[str, str]] = []  # (tls.root, where) of listeners asking for certificates
        order = 0
        for ls in listeners:
            lwhere = ls.where
            if ls.protocol not in ("HTTP", "HTTPS", "TCP", "TLS"):
                raise ConfigError(f"{lwhere}.protocol", f"{ls.protocol} listeners are not supported yet")
            if ls.protocol in _STREAM_PROTOCOLS:
                runtime = self.stream_listener(ls, gateway)
                if runtime.ssl_context is not None:
                    terminated.add(ls.name)
                    if ls.tls is not None and ls.tls.root is not None:
                        mtls_roots.append((ls.tls.root, f"{lwhere}.tls.root"))
                protocols.add(ls.protocol)
                key = pattern_key(ls.hostname)
                if key in by_host:
                    raise ConfigError(
                        f"{lwhere}.hostname", f"two listeners on port {port} share hostname {ls.hostname!r}"
                    )
                by_host[key] = runtime
                first = first or runtime
                continue
            protocols.add(ls.protocol)
            hostname = ls.hostname
            if hostname is not None:
                err = validate_hostname_pattern(hostname)
                if err:
                    raise ConfigError(f"{lwhere}.hostname", err)
            key = pattern_key(hostname)
            if key in by_host:
                raise ConfigError(f"{lwhere}.hostname", f"two listeners on port {port} share hostname {hostname!r}")
            ssl_ctx = None
            if ls.protocol == "HTTPS":
                if ls.tls is None:
                    raise ConfigError(f"{lwhere}.tls", "an HTTPS listener needs tls.cert and tls.key")
                ssl_ctx = self.server_tls(ls.tls, f"{lwhere}.tls", list(self.limits.alpn))
                if ls.tls.root is not None:
                    mtls_roots.append((ls.tls.root, f"{lwhere}.tls.root"))
            elif ls.tls is not None:
                raise ConfigError(f"{lwhere}.tls", "tls is set but protocol is HTTP (use HTTPS)")
            name = ls.name
            rules: dict[bytes, list[RouteRule]] = {}
            for k, (route, rwhere) in enumerate(ls.routes):
                route_name = route.name or f"route{k}"
                if route.namespace:
                    route_name = f"{route.namespace}/{route_name}"
                chain, timeout, retry, mirror = self.route_policies(
                    route.policies,
                    route.matches,
                    rwhere,
                    f"{gateway}/{name}/{route_name}",
                    (gateway, name, route_name),
                    ls.policies,
                )
                backends = self.route_backends(route, rwhere)
                chain = self.with_signing_buffer(chain, backends)
                if any(t.kind == "llm" for t in backends.items):
                    self.check_llm_policies(route.policies, rwhere)
                    self.llm_hooks(chain, backends)
                compiled = CompiledRoute(
                    route_name,
                    gateway,
                    name,
                    backends,
                    chain,
                    timeout,
                    retry,
                    mirror,
                    head_timeout=(
                        None
                        if timeout is not None and (timeout.request is not None or timeout.backend is not None)
                        else self.static.response_header_timeout
                    ),
                    # backends named (services) but none with an endpoint: 503, not 500
                    unavailable=bool(route.backends) and not backends.items,
                )
                if compiled.mcp_backends and route.policies is not None and route.policies.a2a is not None:
                    raise ConfigError(f"{rwhere}.policies.a2a", "a2a needs HTTP backends (this route's are MCP)")
                route_rules = self.route_rules(route, compiled, rwhere, order)
                order += 1
                patterns = route.hostnames or [""]
                for h, pattern in enumerate(patterns):
                    if pattern:
                        err = validate_hostname_pattern(pattern)
                        if err:
                            raise ConfigError(f"{rwhere}.hostnames[{h}]", err)
                    rules.setdefault(pattern_key(pattern), []).extend(route_rules)
            for shortcut in ls.shortcuts:
                attached, prefixes = (
                    self.mcp_shortcut_route(gateway, name, ls.policies)
                    if shortcut == "mcp"
                    else self.llm_shortcut_route(gateway, name, ls.policies)
                )
                rules.setdefault(b"", []).extend(
                    RouteRule(attached, PATH_PREFIX, prefix, None, None, [], [], order) for prefix in prefixes
                )
                order += 1
            runtime = ListenerRuntime(name, gateway, hostname, ls.protocol, ssl_ctx, RouteTable(rules))
            by_host[key] = runtime
            first = first or runtime
        if first is None:
            raise ConfigError(f"{where}.listeners", "a bind needs at least one listener")
        if len(protocols) > 1:
            if protocols == {"HTTP", "HTTPS"}:
                raise ConfigError(f"{where}.listeners", "HTTP and HTTPS listeners cannot share a port")
            mixed = " and ".join(sorted(protocols))
            raise ConfigError(
                f"{where}.listeners", f"{mixed} listeners on one port are not supported yet (one protocol per port)"
            )
        protocol = protocols.pop()
        if protocol == "TCP" and len(by_host) > 1:
            raise ConfigError(f"{where}.listeners", "a TCP port has one listener (a TCP connection names no host)")
        if protocol == "TLS" and terminated and len(terminated) != len(by_host):
            raise ConfigError(
                f"{where}.listeners",
                "TLS listeners that terminate (tls set) and that pass TLS through on one port are not supported yet",
            )
        default = by_host.get(b"", first)
        tls = protocol == "HTTPS" or bool(terminated)
        if tls:
            self.share_client_certificate_requests(list(by_host.values()), mtls_roots)
        return BindRuntime(port, tls, ListenerSet(by_host), default, "HTTP" if protocol == "HTTPS" else protocol)

    def stream_listener(self, ls: _ListenerSource, gateway: str) -> ListenerRuntime:
        """A TCP or TLS listener: its tcpRoutes by hostname; TLS with ``tls`` set is terminated
        here (the route still chosen by the SNI), without it passed through untouched."""
        lwhere = ls.where
        if ls.routes:
            raise ConfigError(f"{ls.routes[0][1]}", f"a {ls.protocol} listener takes tcpRoutes, not routes")
        if ls.policies:
            raise ConfigError(lwhere, "gateway-level policies apply to HTTP traffic; this listener is TCP or TLS")
        if ls.hostname is not None:
            err = validate_hostname_pattern(ls.hostname)
            if err:
                raise ConfigError(f"{lwhere}.hostname", err)
        ssl_ctx = None
        if ls.tls is not None:
            if ls.protocol == "TCP":
                raise ConfigError(f"{lwhere}.tls", "tls is set but protocol is TCP (use TLS)")
            ssl_ctx = self.server_tls(ls.tls, f"{lwhere}.tls", None)
        by_pattern: dict[bytes, CompiledTcpRoute] = {}
        for k, (route, rwhere) in enumerate(ls.tcp_routes):
            compiled = self.tcp_route(route, rwhere, k, gateway, ls.name)
            for h, pattern in enumerate(route.hostnames or [""]):
                if pattern:
                    err = validate_hostname_pattern(pattern)
                    if err:
                        raise ConfigError(f"{rwhere}.hostnames[{h}]", err)
                    if ls.protocol == "TCP":
                        raise ConfigError(f"{rwhere}.hostnames", "a TCP connection names no host: hostnames need TLS")
                # The first route in the file keeps a hostname another one also names.
                by_pattern.setdefault(pattern_key(pattern), compiled)
        return ListenerRuntime(
            ls.name, gateway, ls.hostname, ls.protocol, ssl_ctx, RouteTable({}), TcpRouteTable(by_pattern)
        )

    def tcp_route(self, route: TcpRoute, where: str, index: int, gateway: str, listener: str) -> CompiledTcpRoute:
        name = route.name or f"tcproute{index}"
        if route.namespace:
            name = f"{route.namespace}/{name}"
        route_tls = route.policies.backend_tls if route.policies else None
        items: list[tuple[HttpTarget, int]] = []
        for j, rb in enumerate(route.backends):
            bwhere = f"{where}.backends[{j}]"
            if rb.weight < 0:
                raise ConfigError(f"{bwhere}.weight", "must not be negative")
            if (rb.host is None) == (rb.backend is None):
                raise ConfigError(bwhere, "exactly one of host or backend must be set")
            inline_tls = rb.policies.backend_tls if rb.policies else None
            if rb.host is not None:
                host_port, label, named_tls, twhere = rb.host, rb.host, None, bwhere
            else:
                assert rb.backend is not None
                found = self.named.get(rb.backend)
                if found is None:
                    raise ConfigError(f"{bwhere}.backend", f"no backend named {rb.backend!r} in backends[]")
                nb, k = found
                if nb.host is None:
                    raise ConfigError(f"{bwhere}.backend", f"backend {rb.backend!r} is not a host backend")
                host_port, label, named_tls, twhere = nb.host, nb.name, _tls_of(nb.policies), f"backends[{k}]"
            try:
                host, port = split_host_port(host_port)
            except ValueError as exc:
                raise ConfigError(f"{twhere}.host", str(exc)) from None
            tls = inline_tls or route_tls or named_tls
            upstream_tls = self.client_tls(tls, host, f"{bwhere}.policies.backendTLS", alpn=None) if tls else None
            items.append((HttpTarget(host, port, upstream_tls, label, self.static.connect_timeout), rb.weight))
        if not any(w > 0 for _, w in items):
            raise ConfigError(f"{where}.backends", "a TCP route needs a backend (with a weight above 0)")
        return CompiledTcpRoute(name, gateway, listener, WeightedChoice(items))


# Listener protocols whose connections are relayed byte for byte to a tcpRoute.
_STREAM_PROTOCOLS = ("TCP", "TLS")


class _ListenerSource:
    """A listener as written in either form (``binds`` or ``gateways``), with its routes and the
    path of each in the file, and the shortcuts (``mcp``, ``llm``) attached to it."""

    __slots__ = ("name", "hostname", "protocol", "tls", "where", "routes", "policies", "shortcuts", "tcp_routes")

    def __init__(
        self,
        name: str,
        hostname: str | None,
        protocol: str,
        tls: ListenerTls | None,
        where: str,
        routes: list[tuple[Route, str]],
        policies: tuple[Policy, ...] = (),
    ) -> None:
        self.name = name
        self.hostname = hostname
        self.protocol = protocol
        self.tls = tls
        self.where = where
        self.routes = routes
        # gateway-phase policies, applied to every route of the listener
        self.policies = policies
        self.shortcuts: list[str] = []
        # the routes of a TCP or TLS listener
        self.tcp_routes: list[tuple[TcpRoute, str]] = []


def _gateway_protocol(protocol: str | None, tls: ListenerTls | None, where: str) -> str:
    """As agentgateway: HTTP by default, HTTPS when tls is set; tls and protocol must agree."""
    effective = protocol or ("HTTPS" if tls is not None else "HTTP")
    if effective == "HTTPS" and tls is None:
        raise ConfigError(f"{where}.tls", "protocol HTTPS requires tls")
    if effective in ("HTTP", "TCP") and tls is not None:
        raise ConfigError(f"{where}.tls", f"protocol {effective} cannot set tls")
    return effective


def _mcp_authorization(
    *attached: tuple[RoutePolicies | BackendPolicies | None, str],
) -> list[tuple[McpAuthorization, str]]:
    """The mcpAuthorization rule sets attached to an MCP backend's route and references, each with
    its path (they all apply, concatenated)."""
    return [
        (p.mcp_authorization, f"{where}.policies.mcpAuthorization")
        for p, where in attached
        if p is not None and p.mcp_authorization is not None
    ]


def _tls_of(policies: BackendPolicies | None) -> BackendTls | None:
    return policies.backend_tls if policies else None


def _http_of(policies: RoutePolicies | BackendPolicies | None, where: str) -> tuple[BackendHttp, str] | None:
    """A policies block's ``http`` with its path in the file."""
    return (policies.http, f"{where}.policies.http") if policies is not None and policies.http is not None else None


# ``http.version`` as agentgateway reads it ("1.1", "2"), with the "HTTP/x" spellings it also took.
_HTTP_VERSIONS = {"1.1": HTTP_1, "HTTP/1.1": HTTP_1, "2": HTTP_2, "2.0": HTTP_2, "HTTP/2": HTTP_2, "HTTP/2.0": HTTP_2}


def _http_version(value: str | int | float, where: str) -> int:
    version = _HTTP_VERSIONS.get(str(value))
    if version is None:
        raise ConfigError(where, f"unknown HTTP version {value!r} (1.1 or 2)")
    return version


def _regex(text: str, where: str) -> Pattern:
    try:
        return compile_regex(text)
    except ValueError as exc:
        raise ConfigError(where, f"invalid regex: {exc}") from None


def _value_matcher(name: bytes, value: ValueMatch | str, where: str) -> ValueMatcher:
    if isinstance(value, str):
        raise ConfigError(where, f"{value!r} (a match that never holds) is not supported")
    if (value.exact is None) == (value.regex is None):
        raise ConfigError(where, "exactly one of exact or regex must be set")
    if value.exact is not None:
        return ValueMatcher(name, value.exact.encode(), None)
    assert value.regex is not None
    return ValueMatcher(name, None, _regex(value.regex, f"{where}.regex"))


def compile_services(cfg: LocalConfig) -> ServiceTable:
    """The static ``services`` and ``workloads``, joined (routing/services.py)."""
    return ServiceTable(cfg.services, cfg.workloads)


def compile_mcp_settings(cfg: LocalConfig) -> McpSessionSettings:
    """``config.session.key`` (or the SESSION_KEY environment variable) and ``config.mcp``:
    ``sessionTtl``, ``stdioSessionTtl``, ``maxStdioSessions``, the quotas per identity and
    ``maxUpstreamConnections``."""
    raw = cfg.config
    key_text = raw.session.key if raw and raw.session and raw.session.key else os.environ.get("SESSION_KEY")
    key = None
    if key_text:
        try:
            key = bytes.fromhex(key_text.strip())
        except ValueError:
            key = None
        if key is None or len(key) != 32:
            where = "config.session.key" if raw and raw.session and raw.session.key else "SESSION_KEY"
            raise ConfigError(where, "must be 64 hex characters (32 bytes), e.g. from `openssl rand -hex 32`")
    mcp = raw.mcp if raw else None
    ttl = _duration(mcp.session_ttl if mcp else None, 30 * 60.0, "config.mcp.sessionTtl")
    stdio_ttl = _duration(mcp.stdio_session_ttl if mcp else None, 5 * 60.0, "config.mcp.stdioSessionTtl")
    max_stdio = _at_least_one(mcp.max_stdio_sessions if mcp else None, 64, "maxStdioSessions")
    per_identity = _at_least_one(mcp.max_sessions_per_identity if mcp else None, 1024, "maxSessionsPerIdentity")
    stdio_per_identity = _at_least_one(
        mcp.max_stdio_sessions_per_identity if mcp else None, 16, "maxStdioSessionsPerIdentity"
    )
    upstream_connections = _at_least_one(mcp.max_upstream_connections if mcp else None, 256, "maxUpstreamConnections")
    return McpSessionSettings(key, ttl, stdio_ttl, max_stdio, per_identity, stdio_per_identity, upstream_connections)


def _at_least_one(value: int | None, default: int, key: str) -> int:
    """A bound of ``config.mcp`` (``key``): ``default`` when unset."""
    if value is None:
        return default
    if value < 1:
        raise ConfigError(f"config.mcp.{key}", "must be at least 1")
    return value


def compile_config(
    cfg: LocalConfig, base_dir: Path | None = None, health_state: HealthState | None = None
) -> RuntimeConfig:
    """The IR of ``cfg``. ``health_state`` is the previous IR's backend health, carried over for
    the backends and health policies that did not change."""
    static = compile_static(cfg)
    limits = compile_limits(cfg)
    runtime = _Compiler(cfg, static, base_dir, health_state).compile(limits)
    runtime.tracing = compile_tracing(cfg)
    runtime.access_log = compile_access_log(cfg, runtime.tracing)
    runtime.metric_settings = compile_metrics(cfg)
    return runtime
