"""``requestMirror``: send a copy of a share (``percentage``, 0.0-1.0) of the route's requests to
another backend, body included (an addition: agentgateway mirrors the head only). The copy is
fire-and-forget: it never delays or changes the primary response (``proxy/mirror.py``)."""

from __future__ import annotations

from agentgateway.config.errors import ConfigError
from agentgateway.upstream.target import HttpTarget


class RequestMirror:
    kind = "requestMirror"
    __slots__ = ("target", "percentage")

    def __init__(self, target: HttpTarget, percentage: float, where: str) -> None:
        if not 0.0 <= percentage <= 1.0:
            raise ConfigError(f"{where}.percentage", "must be between 0.0 and 1.0")
        self.target = target
        self.percentage = percentage
