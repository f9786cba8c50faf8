"""What a client connection needs from the worker process that accepted it (implemented by
``server.worker.Worker``): where requests go, the running config, the loop, and where finished
requests are reported."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from agentgateway.config.settings import RuntimeSettings
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.exchange import Exchange, ResponseWriter
    from agentgateway.routing.route import CompiledRoute
    from agentgateway.server.http1 import HttpConnection


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


class ConnectionHost(Protocol):
    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    @property
    def runtime(self) -> RuntimeSettings: ...

    @property
    def draining(self) -> bool: ...

    @property
    def connections(self) -> set[HttpConnection]: ...

    def dispatch(self, conn: HttpConnection, ctx: RequestCtx) -> Exchange:
        """What serves a request whose head was parsed: its route's backend, or a local reply."""

    def forward(self, conn: ResponseWriter, ctx: RequestCtx, route: CompiledRoute) -> Exchange:
        """Call the route's backend (its request policies let the request through)."""

    def observe(self, ctx: RequestCtx) -> None:
        """The request is over: metrics and the access log."""

    def log_internal_error(self, what: str, exc: BaseException) -> None: ...
