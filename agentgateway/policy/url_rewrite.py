"""``urlRewrite``: change the path and/or authority sent to the backend.

``path.full`` replaces the path, ``path.prefix`` replaces the part the route's ``pathPrefix``
matched; the query is kept. ``authority.full`` replaces host and port, ``authority.host`` the
host, ``authority.port`` the port, ``auto`` sends the chosen backend's ``host:port``, ``none``
keeps the client's. Unset, a backend named by DNS gets its own ``host:port`` and one given by
address the client's (agentgateway's default, ``hostRewrite: auto``, rewrites only to names).
Everything is checked at load: a prefix rewrite on a route whose matches are not all path
prefixes is a config error (agentgateway refuses it per request).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import AuthorityRewrite, PathRewrite, RouteMatch
from agentgateway.config.schema import UrlRewrite as UrlRewriteConfig
from agentgateway.core.request import AUTHORITY

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.reply import LocalReply

# AUTH_KEEP: nothing said (a named backend's own name goes upstream, as agentgateway's default
# ``auto``); AUTH_NONE: ``none``, the client's authority goes upstream whatever the backend.
AUTH_KEEP, AUTH_FULL, AUTH_HOST, AUTH_PORT, AUTH_AUTO, AUTH_NONE = 0, 1, 2, 3, 4, 5
DEFAULT_PORTS = {b"http": 80, b"https": 443}


def split_authority(authority: bytes) -> tuple[bytes, int | None]:
    """``host[:port]`` (IPv6 in brackets) → (host, port or None)."""
    if authority.startswith(b"["):
        end = authority.find(b"]")
        host, rest = authority[: end + 1], authority[end + 1 :]
        port = rest[1:] if rest.startswith(b":") else b""
    else:
        host, sep, port = authority.rpartition(b":")
        if not sep:
            return authority, None
    try:
        return host, int(port) if port else None
    except ValueError:
        return authority, None


def compile_authority(cfg: AuthorityRewrite | str | None, where: str) -> tuple[int, bytes, int]:
    """(kind, replacement, port) for an ``authority`` field."""
    if cfg is None:
        return AUTH_KEEP, b"", 0
    if cfg == "none":
        return AUTH_NONE, b"", 0
    if cfg == "auto":
        return AUTH_AUTO, b"", 0
    assert isinstance(cfg, AuthorityRewrite)
    chosen = [k for k, v in (("full", cfg.full), ("host", cfg.host), ("port", cfg.port)) if v is not None]
    if len(chosen) != 1:
        raise ConfigError(where, "exactly one of full, host or port (or auto / none)")
    # Written into request heads (Host) and Location: CR or LF would start lines of their own.
    if cfg.full is not None:
        if not cfg.full.isascii() or AUTHORITY.fullmatch(cfg.full.encode()) is None:
            raise ConfigError(f"{where}.full", f"{cfg.full!r} is not host[:port]")
        return AUTH_FULL, cfg.full.encode(), 0
    if cfg.host is not None:
        h = cfg.host
        if (":" in h and not h.startswith("[")) or not h.isascii() or AUTHORITY.fullmatch(h.encode()) is None:
            raise ConfigError(f"{where}.host", f"{cfg.host!r} is not a host name")
        return AUTH_HOST, cfg.host.encode(), 0
    assert cfg.port is not None
    if not 0 < cfg.port < 65536:
        raise ConfigError(f"{where}.port", "must be 1-65535")
    return AUTH_PORT, b"", cfg.port


def compile_path(cfg: PathRewrite | None, where: str, matches: list[RouteMatch]) -> tuple[bytes | None, bytes | None]:
    """(full, prefix) replacements of a ``path`` field."""
    if cfg is None:
        return None, None
    if (cfg.full is None) == (cfg.prefix is None):
        raise ConfigError(where, "exactly one of full or prefix")
    value = cfg.full if cfg.full is not None else cfg.prefix
    assert value is not None
    if not value.startswith("/"):
        raise ConfigError(where, "a path starts with /")
    if cfg.prefix is not None:
        for k, m in enumerate(matches):
            if m.path is not None and (isinstance(m.path, str) or m.path.path_prefix is None):
                raise ConfigError(
                    f"{where}.prefix", f"a prefix rewrite needs pathPrefix matches (matches[{k}] is not one)"
                )
        return None, value.encode()
    return value.encode(), None


def rewrite_path(ctx: RequestCtx, full: bytes | None, prefix: bytes | None) -> bytes:
    """The new path of ``ctx`` (query not included)."""
    if full is not None:
        return full
    assert prefix is not None
    matched = ctx.match_prefix or b""
    rest = ctx.path[len(matched) :]
    if rest and not rest.startswith(b"/") and not prefix.endswith(b"/"):
        return prefix + b"/" + rest
    if prefix.endswith(b"/") and rest.startswith(b"/"):
        return prefix + rest[1:]
    return prefix + rest


class UrlRewrite:
    kind = "urlRewrite"
    __slots__ = ("auth_kind", "auth_value", "auth_port", "full", "prefix")

    def __init__(self, cfg: UrlRewriteConfig, where: str, matches: list[RouteMatch]) -> None:
        self.auth_kind, self.auth_value, self.auth_port = compile_authority(cfg.authority, f"{where}.authority")
        self.full, self.prefix = compile_path(cfg.path, f"{where}.path", matches)

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        if self.full is not None or self.prefix is not None:
            path = rewrite_path(ctx, self.full, self.prefix)
            ctx.path = path
            ctx.target = path + b"?" + ctx.query if ctx.query else path
        kind = self.auth_kind
        if kind in (AUTH_FULL, AUTH_HOST):
            ctx.host = self.auth_value
            ctx.keep_host = True
        elif kind == AUTH_PORT:
            host, _ = split_authority(ctx.host)
            port = self.auth_port
            ctx.host = host if DEFAULT_PORTS.get(ctx.scheme) == port else b"%s:%d" % (host, port)
            ctx.keep_host = True
        elif kind == AUTH_AUTO:
            ctx.auto_host = True
        elif kind == AUTH_NONE:
            ctx.keep_host = True
        return None


class HostRewrite:
    """``hostRewrite: none``: the client's authority goes to every backend, a named one too
    (``auto``, the default, gives a backend named by DNS its own; see ``HttpForward._set_host``)."""

    kind = "hostRewrite"
    __slots__ = ()

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        ctx.keep_host = True
        return None
