"""The runtime IR: what serving code reads. Built by ``compile.compile_config`` from the decoded
file; immutable once built and swapped as a whole on reload."""

from __future__ import annotations

import ssl

from agentgateway.config.schema import LocalConfig
from agentgateway.config.settings import McpSessionSettings, ServerLimits, StaticSettings
from agentgateway.observe.accesslog import AccessLogSettings
from agentgateway.observe.metrics import MetricSettings
from agentgateway.observe.tracing import TracingSettings
from agentgateway.policy.health import EndpointHealth
from agentgateway.routing.table import ListenerSet, RouteTable
from agentgateway.routing.tcp import TcpRouteTable

# Passive health of backends, by (backend connection key, health policy): kept across reloads.
HealthState = dict[tuple[object, ...], EndpointHealth]


class ListenerRuntime:
    __slots__ = ("name", "gateway", "hostname", "protocol", "ssl_context", "client_certs", "routes", "tcp_routes")

    def __init__(
        self,
        name: str,
        gateway: str,
        hostname: str | None,
        protocol: str,
        ssl_context: ssl.SSLContext | None,
        routes: RouteTable,
        tcp_routes: TcpRouteTable | None = None,
    ) -> None:
        self.name = name
        self.gateway = gateway
        self.hostname = hostname
        self.protocol = protocol
        self.ssl_context = ssl_context
        # Clients must present a certificate (``tls.root``): served only on connections that did.
        self.client_certs = ssl_context is not None and ssl_context.verify_mode == ssl.CERT_REQUIRED
        self.routes = routes
        # The routes of a TCP or TLS listener (``tcpRoutes``); None on HTTP and HTTPS listeners.
        self.tcp_routes = tcp_routes


class BindRuntime:
    __slots__ = ("port", "tls", "listeners", "default_listener", "protocol")

    def __init__(
        self,
        port: int,
        tls: bool,
        listeners: ListenerSet[ListenerRuntime],
        default: ListenerRuntime,
        protocol: str = "HTTP",
    ) -> None:
        self.port = port
        # The worker terminates TLS on this port (HTTPS listeners, TLS listeners with ``tls``).
        self.tls = tls
        # What its connections speak: HTTP (HTTP and HTTPS listeners), TCP, or TLS (listeners
        # whose bytes are relayed to a tcpRoute: TLS passed through, or terminated when ``tls``).
        self.protocol = protocol
        self.listeners = listeners
        # Answers TLS clients without SNI (or with an unknown name): the listener without a
        # hostname if there is one, else the first listener of the bind.
        self.default_listener = default


class RuntimeConfig:
    __slots__ = (
        "source",
        "binds",
        "limits",
        "static",
        "health_state",
        "mcp_sessions",
        "tracing",
        "access_log",
        "metric_settings",
        "env_secrets",
    )

    def __init__(
        self,
        source: LocalConfig,
        binds: dict[int, BindRuntime],
        limits: ServerLimits,
        static: StaticSettings,
        health_state: HealthState | None = None,
        mcp_sessions: McpSessionSettings | None = None,
    ) -> None:
        self.source = source
        self.binds = binds
        self.limits = limits
        self.static = static
        self.health_state: HealthState = health_state if health_state is not None else {}
        self.mcp_sessions = mcp_sessions or McpSessionSettings(None, 1800.0)
        # Telemetry (config/observability.py): None when not configured.
        self.tracing: TracingSettings | None = None
        self.access_log: AccessLogSettings | None = None
        self.metric_settings = MetricSettings()
        # The values of secret-named environment variables the config text refers to
        # (config/envexpand.py ``secret_variable_values``): redacted wherever the config is shown.
        self.env_secrets: frozenset[str] = frozenset()
