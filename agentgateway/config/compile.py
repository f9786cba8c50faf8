"""Decoded config → runtime IR. Every semantic check happens here, before anything serves."""

from __future__ import annotations

import os
import re
import ssl
from pathlib import Path

from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.ir import (
    BindRuntime,
    ListenerRuntime,
    McpSessionSettings,
    RuntimeConfig,
    ServerLimits,
    StaticSettings,
)
from agentgateway.config.schema import (
    AiPolicy,
    BackendPolicies,
    BackendTls,
    LlmShortcut,
    LocalConfig,
    McpShortcut,
    NamedBackend,
    Route,
    RouteMatch,
    ValueMatch,
)
from agentgateway.config.tlsfiles import load_cert_chain, load_roots
from agentgateway.llm.config import LlmPolicy, compile_ai_backend, compile_llm_shortcut, compile_policy
from agentgateway.mcp.config import compile_mcp_backend
from agentgateway.policy.direct_response import DirectResponse
from agentgateway.routing.hostnames import validate_hostname_pattern
from agentgateway.routing.route import Backend, CompiledRoute
from agentgateway.routing.table import (
    PATH_EXACT,
    PATH_PREFIX,
    PATH_REGEX,
    ListenerSet,
    RouteRule,
    RouteTable,
    ValueMatcher,
)
from agentgateway.upstream.balance import WeightedChoice
from agentgateway.upstream.target import HttpTarget, UpstreamTls, split_host_port

_TOKEN = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
_TLS_VERSIONS = {
    "TLS_V1_0": ssl.TLSVersion.TLSv1,
    "TLS_V1_1": ssl.TLSVersion.TLSv1_1,
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


def _address(value: str | None, default: str, where: str) -> tuple[str, int] | None:
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


def compile_static(cfg: LocalConfig) -> StaticSettings:
    raw = cfg.config
    logging = raw.logging if raw else None
    backend = raw.backend if raw else None
    workers = raw.workers if raw and raw.workers is not None else default_workers()
    if workers < 1:
        raise ConfigError("config.workers", "must be at least 1")
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
    if tls:
        limits.tls_handshake_timeout = _duration(
            tls.tls_handshake_timeout,
            limits.tls_handshake_timeout,
            "frontendPolicies.tls.tlsHandshakeTimeout",
        )
    return limits


class _Compiler:
    def __init__(self, cfg: LocalConfig, static: StaticSettings, base_dir: Path | None) -> None:
        self.cfg = cfg
        self.static = static
        self.base_dir = base_dir
        self.named: dict[str, tuple[NamedBackend, int]] = {}
        self._client_tls: dict[tuple[object, ...], UpstreamTls] = {}

    # ------------------------------------------------------------------ backends

    def client_tls(self, tls: BackendTls, host: str, where: str) -> UpstreamTls:
        """Client TLS context for one upstream host; contexts with equal settings are shared."""
        server_hostname = tls.hostname or host
        fingerprint = (tls.cert, tls.key, tls.root, server_hostname, tls.insecure, tls.insecure_host)
        cached = self._client_tls.get(fingerprint)
        if cached is not None:
            return cached
        ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
        if tls.root:
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            load_roots(ctx, tls.root, self.base_dir, f"{where}.root")
        if tls.insecure:
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
        elif tls.insecure_host:
            ctx.check_hostname = False
        if (tls.cert is None) != (tls.key is None):
            raise ConfigError(where, "cert and key go together (client certificate for mTLS)")
        if tls.cert and tls.key:
            load_cert_chain(ctx, tls.cert, tls.key, self.base_dir, where)
        ctx.set_alpn_protocols(["http/1.1"])
        out = UpstreamTls(ctx, server_hostname, fingerprint)
        self._client_tls[fingerprint] = out
        return out

    def make_target(self, host: str, port: int, tls: BackendTls | None, label: str, where: str) -> HttpTarget:
        upstream_tls = self.client_tls(tls, host, f"{where}.policies.backendTLS") if tls else None
        return HttpTarget(host, port, upstream_tls, label, self.static.connect_timeout)

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
            if nb.host is not None and nb.policies and (nb.policies.backend_auth or nb.policies.ai):
                raise ConfigError(f"{where}.policies", "backendAuth and ai apply to ai backends only (for now)")
            self.named[nb.name] = (nb, i)

    def route_backends(self, route: Route, where: str) -> WeightedChoice[Backend]:
        route_tls = route.policies.backend_tls if route.policies else None
        route_auth = route.policies.backend_auth if route.policies else None
        route_ai = route.policies.ai if route.policies else None
        items: list[tuple[Backend, int]] = []
        for j, rb in enumerate(route.backends):
            bwhere = f"{where}.backends[{j}]"
            if rb.weight < 0:
                raise ConfigError(f"{bwhere}.weight", "must not be negative")
            if sum(x is not None for x in (rb.host, rb.backend, rb.mcp, rb.ai)) != 1:
                raise ConfigError(bwhere, "exactly one of host, backend, mcp or ai must be set")
            inline_tls = _tls_of(rb.policies)
            inline_auth = rb.policies.backend_auth if rb.policies else None
            inline_ai = rb.policies.ai if rb.policies else None
            target: Backend
            if rb.ai is None and rb.backend is None and (inline_auth or inline_ai):
                raise ConfigError(f"{bwhere}.policies", "backendAuth and ai apply to ai backends only (for now)")
            if rb.host is not None:
                target = self.http_target(rb.host, inline_tls or route_tls, rb.host, bwhere)
            elif rb.mcp is not None:
                target = compile_mcp_backend(rb.mcp, "mcp", f"{bwhere}.mcp", self.make_target)
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
                    inline_auth or route_auth,
                    inline_tls or route_tls,
                )
            else:
                assert rb.backend is not None
                found = self.named.get(rb.backend)
                if found is None:
                    raise ConfigError(f"{bwhere}.backend", f"no backend named {rb.backend!r} in backends[]")
                nb, k = found
                if nb.mcp is not None:
                    target = compile_mcp_backend(nb.mcp, nb.name, f"backends[{k}].mcp", self.make_target)
                elif nb.ai is not None:
                    nb_ai = nb.policies.ai if nb.policies else None
                    nb_auth = nb.policies.backend_auth if nb.policies else None
                    ai_policy = inline_ai or route_ai or nb_ai
                    policy = self.ai_policy(ai_policy, f"{bwhere}.policies.ai")
                    target = compile_ai_backend(
                        nb.ai,
                        nb.name,
                        f"backends[{k}].ai",
                        self.make_target,
                        policy,
                        inline_auth or route_auth or nb_auth,
                        inline_tls or route_tls or _tls_of(nb.policies),
                    )
                else:
                    assert nb.host is not None
                    # Precedence as the reference: backend-level < route-level < backendRef inline.
                    tls = inline_tls or route_tls or _tls_of(nb.policies)
                    target = self.http_target(nb.host, tls, nb.name, f"backends[{k}]")
            items.append((target, rb.weight))
        return WeightedChoice(items)

    def mcp_shortcut_bind(self, shortcut: McpShortcut) -> BindRuntime:
        """``mcp:``: one listener on its own port whose only route serves /mcp and /sse."""
        if not 0 < shortcut.port < 65536:
            raise ConfigError("mcp.port", "must be 1-65535")
        service = compile_mcp_backend(shortcut, "mcp", "mcp", self.make_target)
        direct = None
        if shortcut.policies and shortcut.policies.direct_response:
            direct = DirectResponse.compile(shortcut.policies.direct_response, "mcp.policies.directResponse")
        gateway = f"bind/{shortcut.port}"
        route = CompiledRoute("mcp", gateway, "mcp", WeightedChoice([(service, 1)]), direct)
        rules = [
            RouteRule(route, PATH_PREFIX, prefix, None, None, [], [], order)
            for order, prefix in enumerate((b"/mcp", b"/sse"))
        ]
        listener = ListenerRuntime("mcp", gateway, None, "HTTP", None, RouteTable({b"": rules}))
        return BindRuntime(shortcut.port, False, ListenerSet({b"": listener}), listener)

    def ai_policy(self, ai: AiPolicy | None, where: str) -> LlmPolicy:
        return compile_policy(ai, where, self.make_target)

    def llm_shortcut_bind(self, shortcut: LlmShortcut) -> BindRuntime:
        """``llm:``: one listener on its own port serving the OpenAI and Anthropic APIs."""
        if not 0 < shortcut.port < 65536:
            raise ConfigError("llm.port", "must be 1-65535")
        service = compile_llm_shortcut(shortcut, self.make_target, self.base_dir)
        policies = shortcut.policies
        if policies is not None:
            if (
                policies.direct_response is not None
                or policies.backend_tls is not None
                or policies.backend_auth is not None
            ):
                raise ConfigError(
                    "llm.policies", "directResponse, backendTLS and backendAuth do not apply to the llm shortcut"
                )
            service.policy = self.ai_policy(policies.ai, "llm.policies.ai")
        gateway = f"bind/{shortcut.port}"
        route = CompiledRoute("llm", gateway, "llm", WeightedChoice([(service, 1)]))
        rules = [RouteRule(route, PATH_PREFIX, b"/", None, None, [], [], 0)]
        listener = ListenerRuntime("llm", gateway, None, "HTTP", None, RouteTable({b"": rules}))
        return BindRuntime(shortcut.port, False, ListenerSet({b"": listener}), listener)

    # ------------------------------------------------------------------ routes

    def route_rules(self, route: Route, compiled: CompiledRoute, where: str, order: int) -> list[RouteRule]:
        matches = route.matches or [RouteMatch()]
        return [self.rule(m, compiled, f"{where}.matches[{k}]", order) for k, m in enumerate(matches)]

    def rule(self, m: RouteMatch, route: CompiledRoute, where: str, order: int) -> RouteRule:
        kind, value, regex = PATH_PREFIX, b"/", None
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
                kind, value = (PATH_EXACT if key == "exact" else PATH_PREFIX), text.encode()
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

    def compile(self, limits: ServerLimits) -> RuntimeConfig:
        self.index_named_backends()
        binds: dict[int, BindRuntime] = {}
        for i, bind in enumerate(self.cfg.binds):
            bwhere = f"binds[{i}]"
            if not 0 < bind.port < 65536:
                raise ConfigError(f"{bwhere}.port", "must be 1-65535")
            if bind.port in binds:
                raise ConfigError(f"{bwhere}.port", f"port {bind.port} is bound twice")
            binds[bind.port] = self.bind(bind.port, bind.listeners, bwhere)
        if self.cfg.mcp is not None:
            if self.cfg.mcp.port in binds:
                raise ConfigError("mcp.port", f"port {self.cfg.mcp.port} is also a bind's port")
            binds[self.cfg.mcp.port] = self.mcp_shortcut_bind(self.cfg.mcp)
        if self.cfg.llm is not None:
            if self.cfg.llm.port in binds:
                raise ConfigError("llm.port", f"port {self.cfg.llm.port} is also used by a bind or the mcp shortcut")
            binds[self.cfg.llm.port] = self.llm_shortcut_bind(self.cfg.llm)
        return RuntimeConfig(self.cfg, binds, limits, self.static, compile_mcp_settings(self.cfg))

    def bind(self, port: int, listeners: list, where: str) -> BindRuntime:  # type: ignore[type-arg]
        gateway = f"bind/{port}"
        by_host: dict[bytes, ListenerRuntime] = {}
        protocols = set()
        first: ListenerRuntime | None = None
        order = 0
        for j, ls in enumerate(listeners):
            lwhere = f"{where}.listeners[{j}]"
            if ls.protocol not in ("HTTP", "HTTPS"):
                raise ConfigError(f"{lwhere}.protocol", f"{ls.protocol} listeners are not supported yet")
            protocols.add(ls.protocol)
            hostname = ls.hostname
            if hostname is not None:
                err = validate_hostname_pattern(hostname)
                if err:
                    raise ConfigError(f"{lwhere}.hostname", err)
            key = (hostname or "").lower().encode()
            if key in by_host:
                raise ConfigError(f"{lwhere}.hostname", f"two listeners on port {port} share hostname {hostname!r}")
            ssl_ctx = None
            if ls.protocol == "HTTPS":
                if ls.tls is None:
                    raise ConfigError(f"{lwhere}.tls", "an HTTPS listener needs tls.cert and tls.key")
                ssl_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
                load_cert_chain(ssl_ctx, ls.tls.cert, ls.tls.key, self.base_dir, f"{lwhere}.tls")
                if ls.tls.min_tls_version:
                    ssl_ctx.minimum_version = _TLS_VERSIONS[ls.tls.min_tls_version]
                if ls.tls.max_tls_version:
                    ssl_ctx.maximum_version = _TLS_VERSIONS[ls.tls.max_tls_version]
                ssl_ctx.set_alpn_protocols(["http/1.1"])
            elif ls.tls is not None:
                raise ConfigError(f"{lwhere}.tls", "tls is set but protocol is HTTP (use HTTPS)")
            name = ls.name or f"listener{j}"
            rules: dict[bytes, list[RouteRule]] = {}
            for k, route in enumerate(ls.routes):
                rwhere = f"{lwhere}.routes[{k}]"
                route_name = route.name or f"route{k}"
                if route.namespace:
                    route_name = f"{route.namespace}/{route_name}"
                direct = None
                if route.policies and route.policies.direct_response:
                    direct = DirectResponse.compile(route.policies.direct_response, f"{rwhere}.policies.directResponse")
                compiled = CompiledRoute(route_name, gateway, name, self.route_backends(route, rwhere), direct)
                route_rules = self.route_rules(route, compiled, rwhere, order)
                order += 1
                patterns = route.hostnames or [""]
                for h, pattern in enumerate(patterns):
                    if pattern:
                        err = validate_hostname_pattern(pattern)
                        if err:
                            raise ConfigError(f"{rwhere}.hostnames[{h}]", err)
                    rules.setdefault(pattern.lower().encode(), []).extend(route_rules)
            runtime = ListenerRuntime(name, gateway, hostname, ls.protocol, ssl_ctx, RouteTable(rules))
            by_host[key] = runtime
            first = first or runtime
        if len(protocols) > 1:
            raise ConfigError(f"{where}.listeners", "HTTP and HTTPS listeners cannot share a port")
        if first is None:
            raise ConfigError(f"{where}.listeners", "a bind needs at least one listener")
        default = by_host.get(b"", first)
        return BindRuntime(port, "HTTPS" in protocols, ListenerSet(by_host), default)


def _tls_of(policies: BackendPolicies | None) -> BackendTls | None:
    return policies.backend_tls if policies else None


def _regex(text: str, where: str) -> re.Pattern[bytes]:
    try:
        return re.compile(text.encode())
    except re.error as exc:
        raise ConfigError(where, f"invalid regex: {exc}") from None


def _value_matcher(name: bytes, value: ValueMatch, where: str) -> ValueMatcher:
    if (value.exact is None) == (value.regex is None):
        raise ConfigError(where, "exactly one of exact or regex must be set")
    if value.exact is not None:
        return ValueMatcher(name, value.exact.encode(), None)
    assert value.regex is not None
    return ValueMatcher(name, None, _regex(value.regex, f"{where}.regex"))


def compile_mcp_settings(cfg: LocalConfig) -> McpSessionSettings:
    """``config.session.key`` (or the SESSION_KEY environment variable) and ``config.mcp.sessionTtl``."""
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
    ttl_text = raw.mcp.session_ttl if raw and raw.mcp else None
    ttl = _duration(ttl_text, 30 * 60.0, "config.mcp.sessionTtl")
    return McpSessionSettings(key, ttl)


def compile_config(cfg: LocalConfig, base_dir: Path | None = None) -> RuntimeConfig:
    static = compile_static(cfg)
    limits = compile_limits(cfg)
    return _Compiler(cfg, static, base_dir).compile(limits)
