"""``csrf``: state-changing requests must come from the gateway's own origin.

agentgateway's checks, in order: ``GET``, ``HEAD`` and ``OPTIONS`` always pass. A browser's
``Sec-Fetch-Site`` decides when present: ``same-origin`` and ``none`` (typed or bookmarked) pass,
anything else (``cross-site``, ``same-site``) is refused unless the ``Origin`` is one of
``additionalOrigins``. Without it, the ``Origin`` decides: none (or ``null``) passes — a
non-browser client — and so does the request's own origin (``scheme://Host``) or one of
``additionalOrigins``; any other is refused with 403.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.config.schema import Csrf as CsrfConfig
from agentgateway.core.reply import LocalReply

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx

_SAFE = frozenset((b"GET", b"HEAD", b"OPTIONS"))
_SAME = frozenset((b"same-origin", b"none"))


class Csrf:
    kind = "csrf"
    __slots__ = ("additional",)

    def __init__(self, cfg: CsrfConfig, where: str) -> None:
        self.additional = frozenset(o.encode() for o in cfg.additional_origins)

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        if ctx.method in _SAFE:
            return None
        origin: bytes | None = None
        fetch_site: bytes | None = None
        for name, value in ctx.headers:
            if name == b"origin":
                origin = value
            elif name == b"sec-fetch-site":
                fetch_site = value
        if origin == b"null":
            origin = None
        if fetch_site is not None:
            if fetch_site in _SAME or (origin is not None and origin in self.additional):
                return None
            return LocalReply.text(403, "Cross-origin request detected from Sec-Fetch-Site header")
        if origin is None or origin == ctx.scheme + b"://" + ctx.host or origin in self.additional:
            return None
        return LocalReply.text(403, "Cross-origin request detected")
