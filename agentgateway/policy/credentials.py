"""Where authentication policies find a credential in a request, and how they remove it.

agentgateway's ``location`` (``jwtAuth``, ``apiKey``) and ``authorizationLocation``
(``basicAuth``, ``mcpAuthentication``): a header with an optional prefix (default
``Authorization: Bearer <token>``), a query parameter, a cookie, or a CEL expression. A
credential that was accepted is removed from the request before it goes upstream (an expression
location cannot remove anything).

A credential is read as the upstream behind the gateway might read it, so that ``mode: optional``
(a credential that is present must be valid) never lets one through unchecked: of repeated
occurrences the first that is not empty counts (an empty first one would otherwise hide a second
that PHP or Express reads); a query is split at ``;`` as well as ``&`` (as Rack 2, older Go and
Python read it); a prefix that ends in a space is the scheme followed by any run of spaces and
tabs (Rails reads ``Bearer<TAB>token`` as a bearer token); a header's underscore spelling
(``x_api_key``) is the header too.
"""

from __future__ import annotations

from urllib.parse import unquote_plus

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import CredentialLocation
from agentgateway.core.context import RequestCtx
from agentgateway.core.request import query_parameters, query_without
from agentgateway.policy.cel import CelEvaluationError, CelExpression

_HEADER, _QUERY, _COOKIE, _EXPRESSION = range(4)
_BLANKS = b" \t"


class Location:
    """One configured location, ready for the request path."""

    __slots__ = ("_kind", "_name", "_names", "_name_text", "_prefix", "_scheme", "_expression", "describe")

    def __init__(self, kind: int, name: str, prefix: str = "", expression: CelExpression | None = None) -> None:
        self._kind = kind
        self._name = name.lower().encode() if kind == _HEADER else name.encode()
        # A header is also read, and removed, in its underscore spelling: CGI-style upstreams
        # (WSGI, PHP, Rack) read ``x_api_key`` as ``x-api-key`` (both are ``HTTP_X_API_KEY``).
        self._names = frozenset((self._name, self._name.replace(b"-", b"_")))
        self._name_text = name
        self._prefix = prefix.lower().encode("latin-1")
        # A prefix ending in a blank (``Bearer ``) is a scheme: then any run of blanks follows it.
        self._scheme = self._prefix.rstrip(_BLANKS) if self._prefix[-1:] in (b" ", b"\t") else None
        self._expression = expression
        self.describe = {
            _HEADER: f"header {name}",
            _QUERY: f"query parameter {name}",
            _COOKIE: f"cookie {name}",
            _EXPRESSION: "expression",
        }[kind]

    @classmethod
    def compile(cls, cfg: CredentialLocation | None, default_prefix: str, where: str) -> Location:
        """``cfg`` or the default: the ``authorization`` header with ``default_prefix``."""
        if cfg is None:
            return cls(_HEADER, "authorization", default_prefix)
        chosen = [
            k
            for k, v in (
                ("header", cfg.header),
                ("queryParameter", cfg.query_parameter),
                ("cookie", cfg.cookie),
                ("expression", cfg.expression),
            )
            if v is not None
        ]
        if len(chosen) != 1:
            raise ConfigError(where, "exactly one of header, queryParameter, cookie or expression must be set")
        if cfg.header is not None:
            if not cfg.header.name:
                raise ConfigError(f"{where}.header.name", "must not be empty")
            return cls(_HEADER, cfg.header.name, cfg.header.prefix or "")
        if cfg.query_parameter is not None:
            return cls(_QUERY, cfg.query_parameter.name)
        if cfg.cookie is not None:
            return cls(_COOKIE, cfg.cookie.name)
        assert cfg.expression is not None
        return cls(_EXPRESSION, "", expression=CelExpression(cfg.expression, f"{where}.expression"))

    @property
    def removable(self) -> bool:
        return self._kind != _EXPRESSION

    def extract(self, ctx: RequestCtx) -> str | None:
        """The credential, or None when the request has none here. Of repeated occurrences, the
        first that is not empty (a header without the prefix is none): a first ``Authorization:
        Basic …`` or an empty ``x-api-key:`` must not hide a second one from the check while an
        upstream reads it."""
        kind = self._kind
        if kind == _HEADER:
            names = self._names
            for k, v in ctx.headers:
                if k in names:
                    if self._prefix:
                        found = self._after_prefix(v)
                        if found is None:
                            continue
                        v = found
                    v = v.strip()
                    if v:
                        return v.decode("latin-1")
            return None
        if kind == _QUERY:
            if not ctx.query:
                return None
            for param, raw in query_parameters(ctx.query):
                if param == self._name_text:
                    text = unquote_plus(raw.decode("latin-1"))
                    if text:
                        return text
            return None
        if kind == _COOKIE:
            for k, v in ctx.headers:
                if k == b"cookie":
                    for cookie, raw in _cookies(v):
                        if cookie == self._name and raw:
                            return raw.decode("latin-1")
            return None
        assert self._expression is not None
        try:
            value = self._expression.evaluate(ctx, ctx.cel_vars)
        except CelEvaluationError:
            return None
        if isinstance(value, bytes):
            value = value.decode("latin-1")
        return value if isinstance(value, str) and value else None

    def remove(self, ctx: RequestCtx) -> None:
        """Take the credential out of the request (it must not reach the upstream)."""
        kind = self._kind
        if kind == _HEADER:
            names = self._names
            ctx.headers = [(k, v) for k, v in ctx.headers if k not in names]
        elif kind == _QUERY:
            # Every occurrence, also after a ';'; the other parameters are kept as they came.
            ctx.query = query_without(ctx.query, (self._name_text,))
            ctx.target = ctx.path + b"?" + ctx.query if ctx.query else ctx.path
        elif kind == _COOKIE:
            headers = []
            for k, v in ctx.headers:
                if k == b"cookie":
                    rest = [b"%s=%s" % (n, val) for n, val in _cookies(v) if n != self._name]
                    if not rest:
                        continue
                    v = b"; ".join(rest)
                headers.append((k, v))
            ctx.headers = headers

    def _after_prefix(self, value: bytes) -> bytes | None:
        """What follows the prefix in a header value, or None when the value lacks it."""
        scheme = self._scheme
        if scheme is None:
            prefix = self._prefix
            return value[len(prefix) :] if value[: len(prefix)].lower() == prefix else None
        n = len(scheme)
        if value[:n].lower() != scheme or value[n : n + 1] not in (b" ", b"\t"):
            return None
        return value[n:]


def _cookies(header: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for part in header.split(b";"):
        name, sep, value = part.strip().partition(b"=")
        if sep:
            out.append((name.strip(), value.strip().strip(b'"')))
    return out
