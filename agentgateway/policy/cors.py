"""``cors``: the gateway answers CORS preflights and marks allowed cross-origin responses.

Envoy's semantics, as agentgateway follows them: a request without ``Origin`` is none of CORS's
business. An ``OPTIONS`` request from an allowed origin is answered by the gateway (200, the allow
headers) and never reaches the backend; a preflight (``OPTIONS`` with
``Access-Control-Request-Method``) from an origin that is not allowed gets a bare 200 without any
CORS header, so the browser refuses it. Other requests go through; those from an allowed origin
get ``access-control-allow-origin`` (the origin itself), ``-allow-credentials`` and
``-expose-headers`` on their answer, whoever wrote it (the backend, or another policy's 401/429),
replacing what the backend said about CORS.

Origins are ``scheme://host[:port]``; the port defaults to the scheme's, and a ``*`` in an allowed
origin's host matches any run of characters (``https://*.example.com``); ``*`` alone allows every
origin. ``allowMethods``/``allowHeaders`` of ``*`` echo what the preflight asks for (or ``*``
without credentials).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Cors as CorsConfig
from agentgateway.core.reply import LocalReply
from agentgateway.policy.chain import Headers

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx

_TOKEN = frozenset(b"!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_ALLOW_ORIGIN = b"access-control-allow-origin"
_ALLOW_CREDENTIALS = b"access-control-allow-credentials"
_EXPOSE_HEADERS = b"access-control-expose-headers"
_CORS_RESPONSE = frozenset((_ALLOW_ORIGIN, _ALLOW_CREDENTIALS, _EXPOSE_HEADERS))
_DEFAULT_PORTS = {"http": 80, "https": 443}


def parse_origin(value: str, wildcard_host: bool = False) -> tuple[str, str, int] | None:
    """``scheme://host[:port]`` → (scheme, lower-cased host, port), or None if it is not one."""
    scheme, sep, rest = value.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in _DEFAULT_PORTS or not rest or any(c in rest for c in "/?#"):
        return None
    host, colon, port_text = rest.rpartition(":")
    if not colon:
        host, port = rest, _DEFAULT_PORTS[scheme]
    else:
        if not host or ":" in host or not port_text.isdigit() or len(port_text) > 5:
            # (IPv6 literals are not origins a browser sends in this form; a port of thousands of
            # digits is more than ``int`` converts: a 500 and a traceback a request)
            return None
        port = int(port_text)
        if not 0 < port < 65536:
            return None
    if not host or ("*" in host and not wildcard_host):
        return None
    return scheme, host.lower(), port


def _wildcard_match(pattern: str, value: str) -> bool:
    """``*`` matches any run of characters (none included); everything else literally."""
    p = v = 0
    star = -1
    mark = 0
    while v < len(value):
        if p < len(pattern) and pattern[p] == "*":
            star, mark = p, v
            p += 1
        elif p < len(pattern) and pattern[p] == value[v]:
            p += 1
            v += 1
        elif star >= 0:
            p = star + 1
            mark += 1
            v = mark
        else:
            return False
    while p < len(pattern) and pattern[p] == "*":
        p += 1
    return p == len(pattern)


class _AllowedOrigin:
    __slots__ = ("scheme", "host", "port", "wildcard")

    def __init__(self, scheme: str, host: str, port: int) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.wildcard = "*" in host

    def matches(self, scheme: str, host: str, port: int) -> bool:
        if scheme != self.scheme or port != self.port:
            return False
        return _wildcard_match(self.host, host) if self.wildcard else host == self.host


def _header_list(values: list[str], where: str, what: str) -> tuple[bool, bytes | None]:
    """(wildcard, joined value) of allowMethods/allowHeaders/exposeHeaders."""
    if "*" in values:
        return True, b"*"
    for i, v in enumerate(values):
        if not v or any(c not in _TOKEN for c in v.encode()):
            raise ConfigError(f"{where}[{i}]", f"{v!r} is not {what}")
    return False, (",".join(values).encode() if values else None)


def _trimmed_list(value: bytes) -> bytes | None:
    items = [part.strip() for part in value.split(b",")]
    joined = b", ".join(p for p in items if p)
    return joined or None


class Cors:
    kind = "cors"
    __slots__ = (
        "any_origin",
        "origins",
        "credentials",
        "methods_any",
        "methods",
        "headers_any",
        "headers",
        "expose",
        "max_age",
    )

    def __init__(self, cfg: CorsConfig, where: str) -> None:
        self.any_origin = "*" in cfg.allow_origins
        self.origins: list[_AllowedOrigin] = []
        for i, text in enumerate(cfg.allow_origins):
            if text == "*":
                continue
            parsed = parse_origin(text, wildcard_host=True)
            if parsed is None:
                raise ConfigError(
                    f"{where}.allowOrigins[{i}]", f"{text!r} is not an origin (scheme://host[:port], or *)"
                )
            self.origins.append(_AllowedOrigin(*parsed))
        self.credentials = cfg.allow_credentials
        self.methods_any, self.methods = _header_list(cfg.allow_methods, f"{where}.allowMethods", "a method")
        self.headers_any, self.headers = _header_list(cfg.allow_headers, f"{where}.allowHeaders", "a header name")
        _, self.expose = _header_list(cfg.expose_headers, f"{where}.exposeHeaders", "a header name")
        self.max_age: bytes | None = None
        if cfg.max_age is not None:
            try:
                self.max_age = b"%d" % int(parse_duration(cfg.max_age))
            except ValueError as exc:
                raise ConfigError(f"{where}.maxAge", str(exc)) from None

    def allowed(self, origin: bytes) -> bool:
        if self.any_origin:
            return True
        try:
            parsed = parse_origin(origin.decode("ascii"))
        except UnicodeDecodeError:
            return False
        if parsed is None:
            return False
        return any(o.matches(*parsed) for o in self.origins)

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        origin = ctx.header(b"origin")
        if origin is None:
            return None
        if ctx.method != b"OPTIONS":
            return None  # an actual request: its answer is marked in on_response
        if not self.allowed(origin):
            if ctx.header(b"access-control-request-method"):
                # A preflight from an origin that is not allowed: answered, but with nothing the
                # browser would accept; never forwarded.
                return LocalReply(200, (), b"", "cors preflight (origin not allowed)")
            return None
        headers = [(_ALLOW_ORIGIN, origin)]
        methods = self.methods
        if self.methods_any:
            asked = (ctx.header(b"access-control-request-method") or b"").strip()
            methods = asked or (None if self.credentials else b"*")
        if methods is not None:
            headers.append((b"access-control-allow-methods", methods))
        allow_headers = self.headers
        if self.headers_any:
            asked_headers = ctx.header(b"access-control-request-headers")
            allow_headers = (_trimmed_list(asked_headers) if asked_headers else None) or (
                None if self.credentials else b"*"
            )
        if allow_headers is not None:
            headers.append((b"access-control-allow-headers", allow_headers))
        if self.max_age is not None:
            headers.append((b"access-control-max-age", self.max_age))
        if self.credentials:
            headers.append((_ALLOW_CREDENTIALS, b"true"))
        if self.expose is not None:
            headers.append((_EXPOSE_HEADERS, self.expose))
        return LocalReply(200, headers, b"", "cors preflight")

    def on_response(self, ctx: RequestCtx, status: int, headers: Headers) -> None:
        if ctx.method == b"OPTIONS":
            return  # the preflight answer was written above (or is the backend's own OPTIONS)
        origin = ctx.header(b"origin")
        if origin is None or not self.allowed(origin):
            return
        headers[:] = [h for h in headers if h[0] not in _CORS_RESPONSE]
        headers.append((_ALLOW_ORIGIN, origin))
        if self.credentials:
            headers.append((_ALLOW_CREDENTIALS, b"true"))
        if self.expose is not None:
            headers.append((_EXPOSE_HEADERS, self.expose))
