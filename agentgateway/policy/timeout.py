"""``timeout``: ``requestTimeout`` bounds the whole request (every policy, attempt and backoff)
and ``backendRequestTimeout`` each call to a backend, both until the response headers arrive.
A request that runs out gets 504; the upstream connection it was waiting on is closed."""

from __future__ import annotations

from agentgateway.config.durations import parse_duration
from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Timeout as TimeoutConfig


def positive_duration(text: str, where: str) -> float:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        raise ConfigError(where, str(exc)) from None
    if value <= 0:
        raise ConfigError(where, "must be positive")
    return value


class TimeoutPolicy:
    kind = "timeout"
    __slots__ = ("request", "backend")

    def __init__(self, cfg: TimeoutConfig, where: str) -> None:
        self.request = (
            positive_duration(cfg.request_timeout, f"{where}.requestTimeout") if cfg.request_timeout else None
        )
        self.backend = (
            positive_duration(cfg.backend_request_timeout, f"{where}.backendRequestTimeout")
            if cfg.backend_request_timeout
            else None
        )
