"""Where authentication policies find a credential in a request, and how they remove it.

agentgateway's ``location`` (``jwtAuth``, ``apiKey``) and ``authorizationLocation``
(``basicAuth``, ``mcpAuthentication``): a header with an optional prefix (default
``Authorization: Bearer <token>``), a query parameter, a cookie, or a CEL expression. A
credential that was accepted is removed from the request before it goes upstream (an expression
location cannot remove anything).
"""

from __future__ import annotations

from urllib.parse import parse_qsl, unquote_plus

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import CredentialLocation
from agentgateway.core.context import RequestCtx
from agentgateway.policy.cel import CelEvaluationError, CelExpression

_HEADER, _QUERY, _COOKIE, _EXPRESSION = range(4)


class Location:
    """One configured location, ready for the request path."""

    __slots__ = ("_kind", "_name", "_name_text", "_prefix", "_expression", "describe")

    def __init__(self, kind: int, name: str, prefix: str = "", expression: CelExpression | None = None) -> None:
        self._kind = kind
        self._name = name.lower().encode() if kind == _HEADER else name.encode()
        self._name_text = name
        self._prefix = prefix.lower().encode("latin-1")
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
        """The credential, or None when the request has none here (a header without the prefix
        has none). Of repeated headers, the first one with the prefix: a first ``Authorization:
        Basic …`` must not hide a second ``Authorization: Bearer …`` from the check while an
        upstream that looks for a bearer token reads it."""
        kind = self._kind
        if kind == _HEADER:
            name = self._name
            prefix = self._prefix
            for k, v in ctx.headers:
                if k == name:
                    if prefix:
                        if v[: len(prefix)].lower() != prefix:
                            continue
                        v = v[len(prefix) :]
                    return v.strip().decode("latin-1") or None
            return None
        if kind == _QUERY:
            if not ctx.query:
                return None
            for key, text in parse_qsl(ctx.query.decode("latin-1"), keep_blank_values=True):
                if key == self._name_text:
                    return text or None
            return None
        if kind == _COOKIE:
            for k, v in ctx.headers:
                if k == b"cookie":
                    for cookie, raw in _cookies(v):
                        if cookie == self._name:
                            return raw.decode("latin-1") or None
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
            name = self._name
            ctx.headers = [(k, v) for k, v in ctx.headers if k != name]
        elif kind == _QUERY:
            # The other parameters are kept byte for byte.
            text_name = self._name_text
            kept = [
                segment
                for segment in ctx.query.split(b"&")
                if unquote_plus(segment.partition(b"=")[0].decode("latin-1")) != text_name
            ]
            ctx.query = b"&".join(kept)
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


def _cookies(header: bytes) -> list[tuple[bytes, bytes]]:
    out = []
    for part in header.split(b";"):
        name, sep, value = part.strip().partition(b"=")
        if sep:
            out.append((name.strip(), value.strip().strip(b'"')))
    return out
