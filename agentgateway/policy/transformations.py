"""``transformations``: set, add and remove headers with values computed per request, and replace
the request or response body (agentgateway's CEL transformations).

Values are expressions (``policy.expression``). As in agentgateway, a header whose value is absent
for a request (the expression failed: a missing header or claim), or is no header value (CR, LF,
NUL: a claim copied into a header must not write header lines of its own), is removed: the
client's own header of that name never passes as the gateway's. A body replacement sends the
computed body (empty without a value) with its own ``content-length``, without the original's
``content-encoding`` and digests (unless the transformation sets them); the original body is read
and dropped.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Transformations as TransformationsConfig
from agentgateway.config.schema import TransformSide
from agentgateway.policy.expression import ValueExpression, compile_value
from agentgateway.policy.header_modifier import header_name

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx
    from agentgateway.core.reply import LocalReply

Headers = list[tuple[bytes, bytes]]
# Framing is the gateway's business; a transformation cannot set these.
_FRAMING = frozenset((b"content-length", b"transfer-encoding", b"connection"))
# What describes the bytes of a body a ``body`` transformation replaces: its coding and digests.
# The replacement is the gateway's own plain bytes, so these go with the original (unless the
# transformation sets them itself). Before, a client's gzip body replaced by plain text reached
# the upstream labelled gzip, and an upstream's compressed answer replaced by plain text reached
# a client that had asked for gzip labelled gzip.
_ORIGINAL_BYTES = frozenset((b"content-encoding", b"content-md5", b"digest", b"content-digest", b"repr-digest"))


class _Side:
    __slots__ = ("drop", "set", "add", "body", "set_drop", "underscore", "body_drop")

    def __init__(self, cfg: TransformSide, where: str, request: bool) -> None:
        def name(key: str, at: str) -> bytes:
            n = header_name(key, at)
            if n in _FRAMING:
                raise ConfigError(at, f"{key} is set by the gateway itself")
            return n

        self.set = tuple((name(k, f"{where}.set"), compile_value(v, f"{where}.set.{k}")) for k, v in cfg.set.items())
        self.add = tuple((name(k, f"{where}.add"), compile_value(v, f"{where}.add.{k}")) for k, v in cfg.add.items())
        self.drop = frozenset(name(k, f"{where}.remove") for k in cfg.remove)
        self.body: ValueExpression | None = compile_value(cfg.body, f"{where}.body") if cfg.body is not None else None
        # Dropped whatever the values: what is removed, and what is set (replaced by the value, or
        # gone when there is none). On requests also in the underscore spelling that CGI-style
        # upstreams read as the same header (as requestHeaderModifier does).
        touched = self.drop | {n for n, _ in self.set}
        self.underscore = request
        self.set_drop = touched | (_underscored(touched) if request else frozenset())
        own = {n for n, _ in self.set} | {n for n, _ in self.add}
        self.body_drop = _ORIGINAL_BYTES - own if self.body is not None else frozenset()

    def edit(self, ctx: RequestCtx, headers: Headers) -> Headers:
        """``headers`` with the side's edits. As agentgateway: a header whose expression has no
        value (it failed: an anonymous caller's ``jwt.sub``), or no valid one (CR, LF, NUL), is
        removed, also for ``add``, so that a failed evaluation never lets the client's own header of
        that name pass as the gateway's."""
        added = [(n, e.evaluate_header(ctx)) for n, e in self.add]
        drop = self.set_drop | self.body_drop if self.body_drop else self.set_drop
        failed = {n for n, v in added if v is None}
        if failed:
            drop = drop | failed | (_underscored(failed) if self.underscore else frozenset())
        out = [h for h in headers if h[0] not in drop] if drop else headers
        removed = self.drop
        out.extend((n, v) for n, v in added if v is not None and n not in removed)
        for n, e in self.set:
            v = e.evaluate_header(ctx)
            if v is not None and n not in removed:
                out.append((n, v))
        return out


def _underscored(names: frozenset[bytes] | set[bytes]) -> frozenset[bytes]:
    return frozenset(n.replace(b"-", b"_") for n in names if b"-" in n)


class Transformations:
    kind = "transformations"
    __slots__ = ("request", "response")

    def __init__(self, cfg: TransformationsConfig, where: str) -> None:
        self.request = _Side(cfg.request, f"{where}.request", True) if cfg.request else None
        self.response = _Side(cfg.response, f"{where}.response", False) if cfg.response else None

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        side = self.request
        if side is None:
            return None
        ctx.headers = side.edit(ctx, ctx.headers)
        if side.body is not None:
            # No value: an empty body, as agentgateway (not the client's body in its place).
            ctx.request_body = side.body.evaluate(ctx) or b""
        return None

    def on_response(self, ctx: RequestCtx, status: int, headers: Headers) -> None:
        side = self.response
        if side is None:
            return
        headers[:] = side.edit(ctx, headers)
        if side.body is not None:
            ctx.response_body = side.body.evaluate(ctx) or b""
