"""The one object a request carries from head to access log (DESIGN §5)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Protocol

from agentgateway.core.request import Headers
from agentgateway.core.trace import RequestTrace

# Reads the request body for a policy: at most ``limit`` + 1 bytes are waited for; answers the
# bytes received so far and whether they are the whole body (server/deferred.py).
BodyReader = Callable[[int], Awaitable[tuple[bytes, bool]]]


class RequestFacts(Protocol):
    """What a backend room learned about a request (an LLM call: ``llm.exchange.LlmFacts``, an
    A2A call: ``a2a.facts.A2aFacts``), told to the access log in its own field names."""

    def log_fields(self, fields: dict[str, object], status: int) -> None: ...

    def span_fields(self, fields: dict[str, object], status: int) -> None:
        """The fields the request's server span carries: ``log_fields`` less what belongs to
        the span of the call itself (token usage, finish reasons, content)."""
        ...


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
        "peer_ip",
        "client_host",
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
        "match_prefix",
        "response_headers",
        "request_body",
        "response_body",
        "auto_host",
        "keep_host",
        "mcp_session",
        "mcp_method",
        "mcp_target",
        "mcp_resource",
        "relayed",
        "llm",
        "allowed_models",
        "cel_vars",
        "identity",
        "jwt_token",
        "read_body",
        "a2a",
        "fetch_timeout",
        "trace",
        "backend_token",
        "upgrade",
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
        # The client's address: the TCP peer, or what a trusted proxy in front says it is
        # (server/forwarded.py); ``peer_ip`` stays the peer (appended to X-Forwarded-For).
        self.client_ip = client_ip
        self.client_port = client_port
        self.peer_ip = client_ip
        # The authority the client asked for, kept when policies rewrite ``host`` (sent upstream
        # as X-Forwarded-Host).
        self.client_host = host
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
        # Set by routing and policies (DESIGN §5):
        self.match_prefix: bytes | None = None  # what the route's pathPrefix matched
        self.response_headers: Headers | None = None  # added to the response (rate-limit state)
        self.request_body: bytes | None = None  # replaces the client's body (a transformation)
        self.response_body: bytes | None = None  # replaces the backend's body
        self.auto_host = False  # send the chosen backend's host:port as Host
        # A policy chose the Host (urlRewrite.authority, a Host set by requestHeaderModifier): a
        # named backend does not replace it with its own.
        self.keep_host = False
        # MCP facts, set by the MCP endpoint (empty for other traffic).
        self.mcp_session = ""
        self.mcp_method = ""
        self.mcp_target = ""
        self.mcp_resource = ""
        # Handed to another worker of this gateway, which logs and counts it (upstream/relay.py).
        self.relayed = False
        # LLM facts (llm/exchange.py LlmFacts), set by the LLM exchange; None for other traffic.
        self.llm: RequestFacts | None = None
        # The models an authentication policy allows this client (``apiKey.keys[].allowedModels``):
        # patterns with ``*``; None: every model. Checked by the LLM exchange.
        self.allowed_models: tuple[str, ...] | None = None
        # CEL variables policies learned about this request (``jwt``, ``apiKey``, ``basicAuth``,
        # ``mcp``, ``a2a``, ``llm``): what expressions and rules see besides request and source.
        self.cel_vars: dict[str, object] | None = None
        # Set while asynchronous policies run (server/deferred.py): lets one look at the body
        # (extAuthz includeRequestBody, the buffering backendAuth aws needs) without taking it.
        self.read_body: BodyReader | None = None
        # A2A facts (method, task, state), set by the ``a2a`` policy; None for other traffic.
        self.a2a: RequestFacts | None = None
        # Seconds the upstream exchange may take, head and whole body (set by a policy that
        # holds a response whole: the a2a card fetch); None: the route's timeouts only.
        self.fetch_timeout: float | None = None
        # Who the authentication policies proved the client is, as text fit for a fingerprint
        # (``jwt:<iss> <sub>``, ``apiKey:<sha256>``, ``basic:<user>``; several joined by newlines);
        # empty when none did. MCP sessions are bound to it (mcp/session.py).
        self.identity = ""
        # The JWT that jwtAuth validated and removed from the request: what backendAuth
        # passthrough would send upstream again.
        self.jwt_token: str | None = None
        # The W3C trace context when tracing is configured (observe/tracing.py); None otherwise.
        self.trace: RequestTrace | None = None
        # A credential backendAuth got for this request (a token exchange): (the auth that got
        # it, the token), so a retry to a backend with other credentials never sends it.
        self.backend_token: tuple[object, str] | None = None
        # The protocols an HTTP/1.1 client asked to switch to (its ``Upgrade`` value, ``h2c``
        # left out), forwarded upstream; None for a plain request. A ``101`` answer turns the
        # connection into a byte tunnel (proxy/tunnel.py), logged when the tunnel ends.
        self.upgrade: bytes | None = None

    def learn(self, name: str, value: object) -> None:
        """Set the CEL variable ``name`` (``jwt``, ``apiKey``, ...) for later policies."""
        cel_vars = self.cel_vars
        if cel_vars is None:
            self.cel_vars = {name: value}
        else:
            cel_vars[name] = value

    def add_identity(self, who: str) -> None:
        self.identity = f"{self.identity}\n{who}" if self.identity else who

    @property
    def has_body(self) -> bool:
        return self.chunked or bool(self.content_length)

    def add_response_header(self, name: bytes, value: bytes) -> None:
        extra = self.response_headers
        if extra is None:
            self.response_headers = [(name, value)]
        else:
            extra.append((name, value))

    def header(self, name: bytes) -> bytes | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None
