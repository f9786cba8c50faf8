"""``directResponse``: the route answers with a fixed status and body, no backend involved."""

from __future__ import annotations

from typing import TYPE_CHECKING

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import DirectResponse as DirectResponseConfig

if TYPE_CHECKING:
    from agentgateway.server.context import RequestCtx
    from agentgateway.server.http1 import HttpConnection

_TEXT = (b"content-type", b"text/plain; charset=utf-8")


class DirectResponse:
    __slots__ = ("status", "body")

    def __init__(self, status: int, body: bytes) -> None:
        self.status = status
        self.body = body

    @classmethod
    def compile(cls, cfg: DirectResponseConfig, where: str) -> DirectResponse:
        if not 100 <= cfg.status <= 599 or 100 <= cfg.status < 200:
            raise ConfigError(f"{where}.status", "must be a final HTTP status (200-599)")
        return cls(cfg.status, (cfg.body or "").encode())

    def respond(self, conn: HttpConnection, ctx: RequestCtx) -> None:
        conn.send_head(self.status, [_TEXT], len(self.body), True)
        conn.send_body(self.body)
        conn.end_response()
