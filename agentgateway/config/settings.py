"""Settings compiled from the file that serving code of every layer reads (limits, the ``config:``
block, MCP session bounds), and the view of the running config a worker hands to them. Plain
data: the runtime IR (``config/ir.py``) holds them with the route tables."""

from __future__ import annotations

import ipaddress
from typing import Protocol

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class ProxyProtocolSettings:
    """``frontendPolicies.proxyProtocol``: which PROXY protocol versions are read, and whether
    every connection must start with a header (``strict``) or may (``optional``)."""

    __slots__ = ("allow_v1", "allow_v2", "strict")

    def __init__(self, allow_v1: bool, allow_v2: bool, strict: bool) -> None:
        self.allow_v1 = allow_v1
        self.allow_v2 = allow_v2
        self.strict = strict


class ServerLimits:
    """Per-connection limits and timeouts (``frontendPolicies``); applied on reload."""

    __slots__ = (
        "max_header_size",
        "max_headers",
        "header_read_timeout",
        "idle_timeout",
        "max_request_body_size",
        "max_buffer_size",
        "tls_handshake_timeout",
        "body_idle_timeout",
        "body_min_rate",
        "body_min_rate_grace",
        "decode_escaped_slashes",
        "trusted_proxies",
        "http2_window_size",
        "http2_connection_window_size",
        "http2_frame_size",
        "http2_max_header_size",
        "http2_max_concurrent_streams",
        "http2_keepalive_interval",
        "http2_keepalive_timeout",
        "alpn",
        "tunnel_idle_timeout",
        "proxy_protocol",
        "keepalive",
        "max_connection_duration",
    )

    def __init__(
        self,
        max_header_size: int = 64 * 1024,
        max_headers: int = 100,
        header_read_timeout: float = 10.0,
        idle_timeout: float = 600.0,
        max_request_body_size: int | None = None,
        max_buffer_size: int = 2 * 1024 * 1024,
        tls_handshake_timeout: float = 15.0,
    ) -> None:
        self.max_header_size = max_header_size
        self.max_headers = max_headers
        self.header_read_timeout = header_read_timeout
        self.idle_timeout = idle_timeout
        self.max_request_body_size = max_request_body_size
        self.max_buffer_size = max_buffer_size
        self.tls_handshake_timeout = tls_handshake_timeout
        # A request body that pauses this long between two reads, or that arrives slower than
        # ``body_min_rate`` bytes/s on average once ``body_min_rate_grace`` has passed, is cut
        # (Apache mod_reqtimeout's body timeout and MinRate); a rate of 0 checks only pauses.
        self.body_idle_timeout = 60.0
        self.body_min_rate = 500
        self.body_min_rate_grace = 10.0
        # %2F, %5C and a raw backslash in a path: decoded into "/" (True) or refused with 400.
        self.decode_escaped_slashes = False
        # Peers whose forwarded headers are believed (server/forwarded.py); empty: nobody.
        self.trusted_proxies: tuple[IPNetwork, ...] = ()
        # HTTP/2 clients (server/http2.py): flow-control windows of a stream and of a connection
        # (what a client may send before the gateway has passed it on), the largest frame and
        # header list accepted (None: ``max_header_size``), streams open at once, keep-alive
        # pings (None: none) and how long their answer may take.
        self.http2_window_size = 1024 * 1024
        self.http2_connection_window_size = 4 * 1024 * 1024
        self.http2_frame_size = 16 * 1024
        self.http2_max_header_size: int | None = None
        self.http2_max_concurrent_streams = 100
        self.http2_keepalive_interval: float | None = None
        self.http2_keepalive_timeout = 20.0
        # Protocols offered by TLS listeners (ALPN), most preferred first.
        self.alpn: tuple[str, ...] = ("h2", "http/1.1")
        # A connection relayed byte for byte (an accepted upgrade, a TCP or TLS-passthrough
        # route) that carries nothing either way for this long is closed.
        self.tunnel_idle_timeout = 3600.0
        # PROXY protocol headers read on every listener (server/proxy_protocol.py); None: off.
        self.proxy_protocol: ProxyProtocolSettings | None = None
        # TCP keepalive of client connections: (idle seconds, seconds between probes, probes),
        # or None for the system's default (off).
        self.keepalive: tuple[int, int, int] | None = None
        # a client connection older than this is closed at its next idle moment (0: never)
        self.max_connection_duration = 0.0


class StaticSettings:
    """The ``config:`` block. Read at startup; a reload that changes it is reported, not applied
    (except the backend settings, which are compiled into each upstream target)."""

    __slots__ = (
        "admin_addr",
        "stats_addr",
        "readiness_addr",
        "workers",
        "log_format",
        "log_level",
        "connect_timeout",
        "pool_idle_timeout",
        "pool_max_size",
        "termination_deadline",
        "min_termination_deadline",
        "response_header_timeout",
    )

    def __init__(
        self,
        admin_addr: tuple[str, int] | None,
        stats_addr: tuple[str, int] | None,
        readiness_addr: tuple[str, int] | None,
        workers: int,
        log_format: str,
        log_level: str,
        connect_timeout: float,
        pool_idle_timeout: float,
        pool_max_size: int | None,
        termination_deadline: float,
        min_termination_deadline: float,
        response_header_timeout: float = 300.0,
    ) -> None:
        self.admin_addr = admin_addr
        self.stats_addr = stats_addr
        self.readiness_addr = readiness_addr
        self.workers = workers
        self.log_format = log_format
        self.log_level = log_level
        self.connect_timeout = connect_timeout
        self.pool_idle_timeout = pool_idle_timeout
        self.pool_max_size = pool_max_size
        self.termination_deadline = termination_deadline
        self.min_termination_deadline = min_termination_deadline
        # How long a backend may take to start answering a request fully sent to it, on routes
        # without a timeout policy: a backend that accepts and never answers is given up on.
        self.response_header_timeout = response_header_timeout

    def restart_only_changes(self, other: StaticSettings) -> list[str]:
        keys = ("admin_addr", "stats_addr", "readiness_addr", "workers", "log_format", "log_level")
        return [k for k in keys if getattr(self, k) != getattr(other, k)]


class McpSessionSettings:
    """How MCP session ids are protected and how long an idle session lives; how long, and how
    many, sessions that hold stdio processes live (per MCP backend and worker); how many sessions
    one client identity may hold (per worker)."""

    __slots__ = (
        "key",
        "ttl",
        "stdio_ttl",
        "max_stdio",
        "max_per_identity",
        "max_stdio_per_identity",
        "max_upstream_connections",
    )

    def __init__(
        self,
        key: bytes | None,
        ttl: float,
        stdio_ttl: float = 300.0,
        max_stdio: int = 64,
        max_per_identity: int = 1024,
        max_stdio_per_identity: int = 16,
        max_upstream_connections: int = 256,
    ) -> None:
        # None: no configured key; the supervisor then makes one per gateway run, shared by its
        # workers (sessions survive a worker change but not a restart, nor reach other replicas).
        self.key = key
        self.ttl = ttl
        self.stdio_ttl = stdio_ttl
        self.max_stdio = max_stdio
        self.max_per_identity = max_per_identity
        self.max_stdio_per_identity = max_stdio_per_identity
        # Requests in flight at once to one streamable-HTTP target, per worker (mcp.upstream.streamable).
        self.max_upstream_connections = max_upstream_connections


class RuntimeSettings(Protocol):
    """The parts of the running config (``config.ir.RuntimeConfig``) that serving code below the
    assembly reads through its host (a worker): swapped as a whole on reload."""

    @property
    def limits(self) -> ServerLimits: ...

    @property
    def static(self) -> StaticSettings: ...

    @property
    def mcp_sessions(self) -> McpSessionSettings: ...
