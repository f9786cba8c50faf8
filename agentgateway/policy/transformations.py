"""``transformations``: set, add and remove headers with values computed per request, and replace
the request or response body (agentgateway's CEL transformations).

Values are expressions (``policy.expression``): a value that is absent for a request (a missing
header), or that is no header value (CR, LF, NUL: a claim copied into a header must not write
header lines of its own), leaves its header untouched. A body replacement sends the computed body with its own
``content-length``; the original body is read and dropped.
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


class _Side:
    __slots__ = ("drop", "set", "add", "body")

    def __init__(self, cfg: TransformSide, where: str) -> None:
        def name(key: str, at: str) -> bytes:
            n = header_name(key, at)
            if n in _FRAMING:
                raise ConfigError(at, f"{key} is set by the gateway itself")
            return n

        self.set = tuple((name(k, f"{where}.set"), compile_value(v, f"{where}.set.{k}")) for k, v in cfg.set.items())
        self.add = tuple((name(k, f"{where}.add"), compile_value(v, f"{where}.add.{k}")) for k, v in cfg.add.items())
        self.drop = frozenset(name(k, f"{where}.remove") for k in cfg.remove)
        self.body: ValueExpression | None = compile_value(cfg.body, f"{where}.body") if cfg.body is not None else None

    def edit(self, ctx: RequestCtx, headers: Headers) -> Headers:
        values = [(n, e.evaluate_header(ctx)) for n, e in self.set]
        setting = {n for n, v in values if v is not None}
        drop = self.drop | setting
        out = [h for h in headers if h[0] not in drop] if drop else headers
        for n, e in self.add:
            v = e.evaluate_header(ctx)
            if v is not None and n not in self.drop:
                out.append((n, v))
        out.extend((n, v) for n, v in values if v is not None and n not in self.drop)
        return out


class Transformations:
    kind = "transformations"
    __slots__ = ("request", "response")

    def __init__(self, cfg: TransformationsConfig, where: str) -> None:
        self.request = _Side(cfg.request, f"{where}.request") if cfg.request else None
        self.response = _Side(cfg.response, f"{where}.response") if cfg.response else None

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        side = self.request
        if side is None:
            return None
        ctx.headers = side.edit(ctx, ctx.headers)
        if side.body is not None:
            body = side.body.evaluate(ctx)
            if body is not None:
                ctx.request_body = body
        return None

    def on_response(self, ctx: RequestCtx, status: int, headers: Headers) -> None:
        side = self.response
        if side is None:
            return
        headers[:] = side.edit(ctx, headers)
        if side.body is not None:
            body = side.body.evaluate(ctx)
            if body is not None:
                ctx.response_body = body
