"""A concrete HTTP upstream: where to connect and how (TLS settings are part of its identity)."""

from __future__ import annotations

import functools
import ipaddress
import ssl
from typing import TYPE_CHECKING, Protocol

from agentgateway.core.request import AUTHORITY

if TYPE_CHECKING:
    from agentgateway.upstream.backend_auth import BackendAuth


# ``HttpTarget.http_version``.
HTTP_AUTO, HTTP_1, HTTP_2 = 0, 1, 2


class HealthRecord(Protocol):
    """Passive health of one backend (outlier detection, policy/health.py): whether it may be
    picked now, and each attempt's outcome."""

    def available(self, now: float) -> bool: ...

    def record(self, healthy: bool, now: float) -> None: ...


@functools.cache
def system_roots_context(alpn: str | None = None, verify: bool = True, check_hostname: bool = True) -> ssl.SSLContext:
    """A client context that verifies with the system's roots, one per process for each set of
    arguments, shared by every upstream and the gateway's own calls (token endpoints, outbound
    policies): making one loads the whole CA store (~25 ms of CPU), and a context is safe to
    share between connections (the host name is given per connection). Loaded once per process,
    as agentgateway loads its roots; nothing may change it after this."""
    ctx = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    if not verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    elif not check_hostname:
        ctx.check_hostname = False
    if alpn is not None:
        ctx.set_alpn_protocols([alpn])
    return ctx


class UpstreamTls:
    """Client-side TLS to an upstream. ``fingerprint`` names every security-relevant setting so a
    pooled connection made with one configuration is never reused for another (DESIGN §8.6)."""

    __slots__ = ("context", "server_hostname", "fingerprint")

    def __init__(self, context: ssl.SSLContext, server_hostname: str, fingerprint: tuple[object, ...]) -> None:
        self.context = context
        self.server_hostname = server_hostname
        self.fingerprint = fingerprint


class HttpTarget:
    """``host:port`` plus optional TLS. ``pool_key`` selects the connection pool; ``auth`` is
    the backend's ``backendAuth``, applied to each request by the proxy and the client."""

    __slots__ = (
        "host",
        "port",
        "tls",
        "label",
        "authority",
        "named",
        "host_header",
        "pool_key",
        "connect_timeout",
        "health",
        "auth",
        "http_version",
        "tls_h2",
        "h2_pool_key",
    )
    kind = "http"

    def __init__(self, host: str, port: int, tls: UpstreamTls | None, label: str, connect_timeout: float) -> None:
        self.host = host
        self.port = port
        self.tls = tls
        self.label = label
        name = f"[{host}]" if ":" in host else host
        # The backend's authority (``urlRewrite.authority: auto``, and by default for a named
        # backend): an IPv6 address in brackets, or it is no Host at all.
        self.authority = f"{name}:{port}".encode()
        # A backend named by DNS (not an IP address, nor a worker's relay socket): as agentgateway
        # (its default ``hostRewrite: auto``), requests for it carry its name as Host, not the
        # client's, unless a policy chose the authority.
        self.named = not host.startswith("unix:") and not _is_ip(host)
        # The Host header the gateway sends on requests it makes itself to this upstream.
        self.host_header = (name if port == (443 if tls else 80) else f"{name}:{port}").encode()
        self.connect_timeout = connect_timeout
        self.pool_key: tuple[object, ...] = (host, port, tls.fingerprint if tls else None)
        # Passive health (outlier detection) of this backend, when a health policy applies.
        self.health: HealthRecord | None = None
        # Credentials added to every request sent here (backendAuth); not part of the pool key:
        # they travel per request, never with the connection.
        self.auth: BackendAuth | None = None
        # The backend's ``http.version``: HTTP_AUTO (HTTP/1.1, and HTTP/2 for gRPC requests),
        # HTTP_1 or HTTP_2. HTTP/2 over TLS is negotiated with its own context (ALPN h2).
        self.http_version = HTTP_AUTO
        self.tls_h2: UpstreamTls | None = None
        self.h2_pool_key: tuple[object, ...] = (*self.pool_key, "h2")


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def split_host_port(value: str) -> tuple[str, int]:
    """``host:port`` (or ``[v6]:port``) → (host, port); raises ValueError with the reason."""
    if value.startswith("["):
        end = value.find("]")
        if end < 0 or value[end + 1 : end + 2] != ":":
            raise ValueError(f"{value!r} is not [address]:port")
        host, port_text = value[1:end], value[end + 2 :]
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not host:
            raise ValueError(f"{value!r} is not host:port")
    if "/" in host or "://" in value:
        raise ValueError(f"{value!r} is not host:port (no scheme or path here)")
    if not value.isascii() or AUTHORITY.fullmatch(value.encode()) is None:
        # it goes into request heads (Host): CR, LF or spaces would start lines of their own
        raise ValueError(f"{value!r} is not host:port (a DNS name or an IP address, then a port)")
    try:
        port = int(port_text)
    except ValueError:
        raise ValueError(f"{value!r} has an invalid port") from None
    if not 0 < port < 65536:
        raise ValueError(f"{value!r}: port must be 1-65535")
    return host, port
