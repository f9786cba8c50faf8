"""``directResponse``: the route answers with a fixed status and body, no backend involved."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import DirectResponse as DirectResponseConfig
from agentgateway.core.reply import LocalReply

if TYPE_CHECKING:
    from agentgateway.core.context import RequestCtx

_TEXT = (b"content-type", b"text/plain; charset=utf-8")


class DirectResponse:
    kind = "directResponse"
    __slots__ = ("reply",)

    def __init__(self, cfg: DirectResponseConfig, where: str) -> None:
        if not 200 <= cfg.status <= 599:
            raise ConfigError(f"{where}.status", "must be a final HTTP status (200-599)")
        body = cfg.body.encode() if isinstance(cfg.body, str) else bytes(cfg.body or ())
        self.reply = LocalReply(cfg.status, (_TEXT,), body, "")

    @property
    def status(self) -> int:
        return self.reply.status

    @property
    def body(self) -> bytes:
        return self.reply.body

    def on_request(self, ctx: RequestCtx) -> LocalReply | None:
        return self.reply
