"""Routes of TCP and TLS listeners (``tcpRoutes``): a connection has no path or headers, only
the server name a TLS client sent (SNI). As agentgateway does, the route whose hostname matches
the name best wins (exact, then the most specific wildcard), then a route without hostnames; among
equals the first in the file. A plain TCP connection has no name: only a route without hostnames
serves it."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.routing.hostnames import host_candidates, normalize_host

if TYPE_CHECKING:
    from agentgateway.upstream.balance import WeightedChoice
    from agentgateway.upstream.target import HttpTarget


class CompiledTcpRoute:
    """Names for logs and metrics and the backends (``host:port``, with their backendTLS) to
    relay a connection's bytes to."""

    __slots__ = ("name", "gateway", "listener", "backends")

    def __init__(self, name: str, gateway: str, listener: str, backends: WeightedChoice[HttpTarget]) -> None:
        self.name = name
        self.gateway = gateway
        self.listener = listener
        self.backends = backends


class TcpRouteTable:
    """The TCP routes of one listener by hostname pattern (b"" for routes without hostnames)."""

    __slots__ = ("_by_pattern",)

    def __init__(self, by_pattern: dict[bytes, CompiledTcpRoute]) -> None:
        self._by_pattern = by_pattern

    def select(self, server_name: bytes | None) -> CompiledTcpRoute | None:
        if not server_name:
            return self._by_pattern.get(b"")
        for pattern in host_candidates(normalize_host(server_name)):
            route = self._by_pattern.get(pattern)
            if route is not None:
                return route
        return None

    def routes(self) -> list[CompiledTcpRoute]:
        return list(dict.fromkeys(self._by_pattern.values()))
