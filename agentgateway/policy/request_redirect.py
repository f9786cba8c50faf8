"""``requestRedirect``: answer with a redirect built from the request (default status 302)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import RequestRedirect as RequestRedirectConfig
from agentgateway.config.schema import RouteMatch
from agentgateway.core.reply import LocalReply
from agentgateway.policy.url_rewrite import (
    AUTH_AUTO,
    AUTH_FULL,
    AUTH_HOST,
    AUTH_KEEP,
    AUTH_NONE,
    DEFAULT_PORTS,
    compile_authority,
    compile_path,
    rewrite_path,
    split_authority,
)

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx

_REDIRECT_STATUSES = frozenset((301, 302, 303, 307, 308))


class RequestRedirect:
    kind = "requestRedirect"
    __slots__ = ("scheme", "auth_kind", "auth_value", "auth_port", "full", "prefix", "status")

    def __init__(self, cfg: RequestRedirectConfig, where: str, matches: list[RouteMatch]) -> None:
        scheme = cfg.scheme.lower() if cfg.scheme else None
        if scheme is not None and scheme not in ("http", "https"):
            raise ConfigError(f"{where}.scheme", "must be http or https")
        self.scheme = scheme.encode() if scheme else None
        self.auth_kind, self.auth_value, self.auth_port = compile_authority(cfg.authority, f"{where}.authority")
        if self.auth_kind in (AUTH_AUTO, AUTH_NONE):
            self.auth_kind = AUTH_KEEP  # a redirect has no backend to take the host from
        self.full, self.prefix = compile_path(cfg.path, f"{where}.path", matches)
        self.status = cfg.status or 302
        if self.status not in _REDIRECT_STATUSES:
            raise ConfigError(f"{where}.status", "must be one of 301, 302, 303, 307, 308")

    def location(self, ctx: RequestCtx) -> bytes:
        scheme = self.scheme or ctx.scheme
        kind = self.auth_kind
        host, port = split_authority(ctx.host)
        if kind == AUTH_FULL:
            authority = self.auth_value
        elif kind == AUTH_HOST:
            # With an explicit scheme the port is the scheme's; otherwise a non-default port of the
            # request is kept.
            keep = port if self.scheme is None and port is not None and port != DEFAULT_PORTS.get(scheme) else None
            authority = self.auth_value if keep is None else b"%s:%d" % (self.auth_value, keep)
        elif kind == AUTH_KEEP:
            authority = ctx.host
        else:
            new_port = self.auth_port
            authority = host if new_port == DEFAULT_PORTS.get(scheme) else b"%s:%d" % (host, new_port)
        if self.full is not None or self.prefix is not None:
            path = rewrite_path(ctx, self.full, self.prefix)
            target = path + b"?" + ctx.query if ctx.query else path
        else:
            target = ctx.target
        return b"%s://%s%s" % (scheme, authority, target)

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        location = self.location(ctx)
        return LocalReply(self.status, ((b"location", location),), b"", f"redirect to {location.decode('latin-1')}")
