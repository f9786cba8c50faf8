"""``retry``: send a request again when its backend failed.

``attempts`` counts every try, the first included (agentgateway's meaning; 1 = no retry).
A try is retried when the backend could not be reached, closed or timed out
(``backendRequestTimeout``) before answering, or answered with a status in ``codes``; after
``backoff``, on another healthy backend of the route when there is one. The body is replayed
from a bounded copy (64 KiB, as agentgateway): a larger body is never retried. A try whose
backend had already sent part of an answer is retried only for idempotent methods, and once
any byte of a response went to the client nothing is retried.
"""

from __future__ import annotations

from agentgateway.config.errors import ConfigError
from agentgateway.config.schema import Retry as RetryConfig
from agentgateway.policy.expression import compile_condition
from agentgateway.policy.timeout import positive_duration

IDEMPOTENT = frozenset((b"GET", b"HEAD", b"OPTIONS", b"TRACE", b"PUT", b"DELETE"))


class RetryPolicy:
    kind = "retry"
    __slots__ = ("attempts", "backoff", "codes")

    def __init__(self, cfg: RetryConfig, where: str) -> None:
        if not 1 <= cfg.attempts <= 255:
            raise ConfigError(f"{where}.attempts", "must be 1-255 (the first try included)")
        for i, code in enumerate(cfg.codes):
            if not 100 <= code <= 599:
                raise ConfigError(f"{where}.codes[{i}]", f"{code} is not an HTTP status")
        for key, text in (
            ("precondition", cfg.precondition),
            ("condition", cfg.condition),
            ("postcondition", cfg.postcondition),
        ):
            if text is not None:
                compile_condition(text, f"{where}.{key}")
        self.attempts = cfg.attempts
        self.backoff = positive_duration(cfg.backoff, f"{where}.backoff") if cfg.backoff else 0.0
        self.codes = frozenset(cfg.codes)
