"""The one object a request carries from head to access log (DESIGN §5)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.server.request import Headers

if TYPE_CHECKING:
    from agentgateway.llm.exchange import LlmFacts


class RequestCtx:
    """The request head as parsed, then where it went and how it ended (read by logs and metrics).

    Header names are lower-cased bytes, values bytes as received. ``target`` is what is sent
    upstream (origin-form, path normalized); ``path`` and ``query`` are its two halves."""

    __slots__ = (
        "method",
        "target",
        "path",
        "query",
        "host",
        "headers",
        "version",
        "keep_alive",
        "content_length",
        "chunked",
        "expect_continue",
        "client_ip",
        "client_port",
        "scheme",
        "start",
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
        "mcp_session",
        "mcp_method",
        "mcp_target",
        "mcp_resource",
        "relayed",
        "llm",
    )

    def __init__(
        self,
        method: bytes,
        target: bytes,
        path: bytes,
        query: bytes,
        host: bytes,
        headers: Headers,
        version: str,
        keep_alive: bool,
        content_length: int | None,
        chunked: bool,
        expect_continue: bool,
        client_ip: str,
        client_port: int,
        scheme: bytes,
        start: float,
        gateway: str,
    ) -> None:
        self.method = method
        self.target = target
        self.path = path
        self.query = query
        self.host = host
        self.headers = headers
        self.version = version
        self.keep_alive = keep_alive
        self.content_length = content_length
        self.chunked = chunked
        self.expect_continue = expect_continue
        self.client_ip = client_ip
        self.client_port = client_port
        self.scheme = scheme
        self.start = start  # time.perf_counter() when the head was parsed
        self.gateway = gateway
        self.listener = ""
        self.route = ""
        self.backend = ""
        self.status = 0
        # Why the gateway answered itself (no route, upstream down, ...), empty when proxied.
        self.reason = ""
        self.error = ""
        self.request_bytes = 0
        self.response_bytes = 0
        self.end = 0.0
        # MCP facts, set by the MCP endpoint (empty for other traffic).
        self.mcp_session = ""
        self.mcp_method = ""
        self.mcp_target = ""
        self.mcp_resource = ""
        # Handed to another worker of this gateway, which logs and counts it (server/relay.py).
        self.relayed = False
        # LLM facts (llm/exchange.py LlmFacts), set by the LLM exchange; None for other traffic.
        self.llm: LlmFacts | None = None

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None
