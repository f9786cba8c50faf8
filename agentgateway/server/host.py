"""What a client connection needs from the worker process that accepted it (implemented by
``server.worker.Worker``): where requests go, the running config, the loop, and where finished
requests are reported."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

from agentgateway.core.exchange import ResponseWriter

if TYPE_CHECKING:
    from agentgateway.config.settings import RuntimeSettings
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import Exchange
    from agentgateway.routing.route import CompiledRoute
    from agentgateway.routing.tcp import CompiledTcpRoute
    from agentgateway.server.tcp import StreamConnection


class ServedBind(Protocol):
    """The listening port a connection was accepted on."""

    @property
    def port(self) -> int: ...

    @property
    def internal(self) -> bool:
        """The socket other workers relay requests to (its requests passed their policies)."""

    @property
    def gateway(self) -> str:
        """The gateway name logs and metrics use for this port."""


class ClientConnection(ResponseWriter, Protocol):
    """Where a request arrived, as the worker routes it: an HTTP/1.1 connection, or one stream of
    an HTTP/2 connection."""

    @property
    def bind(self) -> ServedBind: ...

    @property
    def sni(self) -> bytes | None:
        """The server name a TLS client asked for (it picks the listener)."""

    @property
    def client_cert(self) -> bool:
        """The TLS client presented a certificate."""


class ServedConnection(Protocol):
    """A client connection as the worker's sweep and drain see it (HTTP/1.1, HTTP/2, or relayed)."""

    @property
    def transport(self) -> asyncio.Transport | None: ...

    @property
    def bind(self) -> ServedBind: ...

    def check_deadline(self, now: float) -> None:
        """Called about twice a second: act on what timed out."""

    def close_if_idle(self) -> bool:
        """Draining: close now if nothing is in flight (True), else let it finish."""

    def retire(self, reason: str) -> None:
        """A reload removed (or reopened) the connection's bind: what is in flight finishes and
        the connection closes, except a relay (a tunnel), which has no end to wait for: cut."""


class ConnectionHost(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def runtime(self) -> RuntimeSettings: ...

    @property
    def draining(self) -> bool: ...

    @property
    def connections(self) -> set[ServedConnection]: ...

    def dispatch(self, conn: ClientConnection, ctx: RequestCtx) -> Exchange:
        """What serves a request whose head was parsed: its route's backend, or a local reply."""

    def forward(self, conn: ResponseWriter, ctx: RequestCtx, route: CompiledRoute) -> Exchange:
        """Call the route's backend (its request policies let the request through)."""

    def observe(self, ctx: RequestCtx) -> None:
        """The request is over: metrics and the access log."""

    def stream_route(
        self, conn: StreamConnection, server_name: bytes | None
    ) -> tuple[str, CompiledTcpRoute | None] | None:
        """The listener (its name) and TCP route that serve a TCP or TLS connection whose client
        named ``server_name`` (SNI; None without); None when no listener takes the name."""

    def observe_connection(self, ctx: RequestCtx) -> None:
        """A relayed TCP or TLS connection is over: metrics and the access log."""

    def log_internal_error(self, what: str, exc: BaseException) -> None: ...
