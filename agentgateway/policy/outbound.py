"""Requests policies make themselves (signing keys, authorization-server metadata): a URL → an
upstream target, and an HTTP client on the running loop.

The client's pool keeps no idle connection: these fetches are rare, and nothing has to sweep it.
"""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

from agentgateway.config.errors import ConfigError
from agentgateway.upstream.client import HttpClient
from agentgateway.upstream.pool import UpstreamPool
from agentgateway.upstream.target import HttpTarget, UpstreamTls, system_roots_context

CONNECT_TIMEOUT = 5.0

_clients: dict[int, HttpClient] = {}
_tls: dict[str, UpstreamTls] = {}


def client() -> HttpClient:
    loop = asyncio.get_running_loop()
    found = _clients.get(id(loop))
    if found is None or found.pool.loop is not loop:
        _clients.clear()
        found = _clients[id(loop)] = HttpClient(UpstreamPool(loop, 0.0, 0))
    return found


def url_target(url: str, where: str) -> tuple[HttpTarget, bytes]:
    """The target and request path (with query) of an http(s) URL; ConfigError if it is not one.
    HTTPS is verified against the system's trust store."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(where, f"{url!r} is not an http(s) URL")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise ConfigError(where, f"{url!r} has an invalid port") from None
    tls = None
    if parts.scheme == "https":
        tls = _tls.get(parts.hostname)
        if tls is None:
            tls = _tls[parts.hostname] = UpstreamTls(
                system_roots_context(), parts.hostname, ("system-roots", parts.hostname)
            )
    target = HttpTarget(parts.hostname, port, tls, f"{parts.hostname}:{port}", CONNECT_TIMEOUT)
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return target, path.encode()
