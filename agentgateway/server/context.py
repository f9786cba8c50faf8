"""The one object a request carries from head to access log (DESIGN §5)."""

from __future__ import annotations

from agentgateway.server.request import Request


class RequestCtx:
    """Who asked for what, where it went and how it ended; read by logs and metrics."""

    __slots__ = (
        "request",
        "gateway",
        "listener",
        "route",
        "backend",
        "status",
        "reason",
        "error",
        "request_bytes",
        "response_bytes",
        "end",
    )

    def __init__(self, request: Request, gateway: str, listener: str) -> None:
        self.request = request
        self.gateway = gateway
        self.listener = listener
        self.route = ""
        self.backend = ""
        self.status = 0
        # Why the gateway answered itself (no route, upstream down, ...), empty when proxied.
        self.reason = ""
        self.error = ""
        self.request_bytes = 0
        self.response_bytes = 0
        self.end = 0.0
